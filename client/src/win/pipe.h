/*
 * win/pipe.h - who serves a named pipe, as a client checks it before it writes (the
 * client library's dialer, and sbctl's, which includes this through the codec's
 * include directory).
 */
#ifndef SB_CLIENT_WIN_PIPE_H
#define SB_CLIENT_WIN_PIPE_H

#include <windows.h>

/*
 * The environment variable that, for tests only, names the one SID trusted as a pipe's
 * server beside SYSTEM and the service SID NT SERVICE\StreamBroker, in place of the
 * client's own user (under Wine every process runs as one user). It can only narrow
 * or move the trust a client places; whoever sets a client's environment can already
 * point it at any server (LOGDOG_STREAM_SERVER_PATH).
 */
#define SB_ENV_TEST_SERVER_SID "SB_TEST_PIPE_SERVER_SID"

/*
 * What a client asks of the control pipe: write, without FILE_APPEND_DATA (on a pipe
 * FILE_CREATE_PIPE_INSTANCE, which GENERIC_WRITE holds and clients are not granted);
 * attributes (SetNamedPipeHandleState, GetFileInformationByHandle); READ_CONTROL for
 * the owner check; SYNCHRONIZE for synchronous I/O. All within 0x12019B.
 */
#define SB__PIPE_CLIENT_ACCESS                                                         \
  (FILE_WRITE_DATA | FILE_WRITE_ATTRIBUTES | FILE_READ_ATTRIBUTES | READ_CONTROL |     \
   SYNCHRONIZE)

/*
 * Whether the server end of the connected pipe h is the service: its process's token
 * (GetNamedPipeServerProcessId, then OpenProcessToken) has as its user SYSTEM, the
 * client's own user, or has the service SID NT SERVICE\StreamBroker. A client that
 * may not read that token (a non-administrator and a service's process) checks the
 * pipe's owner instead, which only the owner's own processes or an administrator can
 * set: SYSTEM, Administrators, the service SID or the client's own user. h needs
 * READ_CONTROL for that. 0, or SB_ESERVER (someone else serves the name: a squatter)
 * or SB_ENOMEM.
 */
int sb__pipe_check_server(HANDLE h);

#endif
