/*
 * confirm.h - the confirmation of a stream's end on its upstream connection, one
 * platform function with a twin of the same file name on each side (win/confirm.c,
 * posix/confirm.c). Included by link.c and the twins, after upstream_int.h.
 */
#ifndef SB_SERVICE_CONFIRM_H
#define SB_SERVICE_CONFIRM_H

/* Begins the end of a connection whose every byte is written; 0: begun (the caller
 * starts up->timer with sb__confirm_timeout), else the connection was closed or
 * broken already. */
int sb__confirm_end(sb__upstream_t* up);
/* The end's deadline (up->timer's callback). */
void sb__confirm_timeout(uv_timer_t* t);
/* A new connection: watch it for the upstream going away (POSIX reads it; Windows
 * notices at the next write). */
void sb__confirm_watch(sb__upstream_t* up);

#endif /* SB_SERVICE_CONFIRM_H */
