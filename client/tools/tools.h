/* tools.h - what the command-line tools need from each platform (posix/, win/). */
#ifndef SB_TOOLS_H
#define SB_TOOLS_H

/* Puts stdin and stdout in binary mode, so no byte is translated on the way. */
void sb__tool_binary_stdio(void);

#endif
