/*
 * readback.h - reading a stream's spool back (readback.c). Included by the upstream
 * files after upstream_int.h.
 */
#ifndef SB_SERVICE_READBACK_H
#define SB_SERVICE_READBACK_H

/* Reads the stream's spool from send_off (window: from the window's oldest resend
 * point, for a reopen's handshake), counted in the budget until sent. */
void sb__readback_read(sb__upstream_t* up, int window);
/* Moves the stream's cursor in the spool to acked (one job at a time), trimming what
 * is behind the replay window. */
void sb__readback_ack(sb__upstream_t* up);

#endif /* SB_SERVICE_READBACK_H */
