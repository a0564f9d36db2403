/* tools.h - what the command-line tools need from each platform (posix/, win/). */
#ifndef SB_TOOLS_H
#define SB_TOOLS_H

#include <stdint.h>

#include "streambroker.h"

/* Puts stdin and stdout in binary mode, so no byte is translated on the way. */
void sb__tool_binary_stdio(void);
/*
 * A C runtime descriptor for an OS handle from sb_stream_open_for_process, as libuv's
 * stdio options take (POSIX: the descriptor itself). Ownership passes to the result;
 * -1 on failure.
 */
int sb__tool_handle_fd(sb_os_handle_t h);
/*
 * Reads what standard input has now, up to size bytes, waiting only while it has
 * nothing (unlike fread, which waits to fill the buffer: a slow producer's lines
 * would sit in sbcat). 0 at end of input, -1 on error.
 */
long sb__tool_read_stdin(void* buf, unsigned size);
/*
 * The program's arguments in UTF-8, as libuv (uv_spawn) and the client library take
 * them. Windows: main's argv is in the ANSI code page (a character outside it is lost,
 * and one inside it is not UTF-8), so they are read again from GetCommandLineW; the
 * result lives as long as the process. POSIX: argv itself. argc is set to their count.
 */
char** sb__tool_utf8_argv(int* argc, char** argv);

/*
 * Runs args (args[0] the program, looked up in PATH) with the environment env ("K=V"
 * strings, NULL-terminated), its stdin ours and its stdout and stderr the descriptors
 * out_fd and err_fd, and waits until it exits: *status its exit status, *signal the
 * signal that ended it (POSIX) or 0. Windows hands the child only those three
 * handles (PROC_THREAD_ATTRIBUTE_HANDLE_LIST); POSIX uses uv_spawn on the default
 * loop. 0, or a libuv error when it cannot be started.
 */
int sb__tool_run(char** args, char** env, int out_fd, int err_fd, int64_t* status,
                 int* signal);

#endif
