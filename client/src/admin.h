/*
 * admin.h - the admin pipe as its clients reach it on libuv (posix/admin.c,
 * win/admin.c): an address's bind path, sbctl's dial, and libuv's errors as SB_E*
 * (uverr.c). In the static library only, which the service and sbctl link with libuv;
 * the shared library has none of it. Included by the service's internal.h and sbctl's
 * files.
 */
#ifndef SB_CLIENT_ADMIN_H
#define SB_CLIENT_ADMIN_H

#include <stddef.h>

#include <uv.h>

/*
 * sbctl's connection to the admin pipe at path: pipe is initialised (uv_pipe_init);
 * cb(req, status) runs once connected (Windows: before this returns). Windows opens
 * the pipe itself with SECURITY_IDENTIFICATION (the server cannot act as the
 * administrator) and checks that the server is the service (SB_ESERVER otherwise).
 * 0, or SB_E* (cb then never runs).
 */
int sb__admin_connect(uv_loop_t* loop, uv_pipe_t* pipe, uv_connect_t* req,
                      const char* path, uv_connect_cb cb);
/* The bind path for an address of this platform's kind (SB_EADDRESS otherwise). */
int sb__address_bind_path(const char* address, char* out, size_t size);

/* Translates a libuv error to SB_E*, once, at the boundary. */
int sb__uv_err(int uv_err);

#endif
