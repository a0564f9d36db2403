/*
 * window.h - a live stream's replay window (window.c). Included by the upstream files
 * after upstream_int.h.
 */
#ifndef SB_SERVICE_WINDOW_H
#define SB_SERVICE_WINDOW_H

/* A chunk sent live joins the window (the caller's reference passes to it); the
 * budget may spill windows then. */
void sb__window_push(sb__upstream_t* up, sb__chunk_t* c);
/* Drops the chunks behind the window: those before its oldest resend point at or
 * before acked - replay_window (and the spool's older part of it). */
void sb__window_trim(sb__upstream_t* up);
/* Writes the window, and what is in flight, to the spool; with route the stream then
 * turns to the spool. Nothing when it spools already or closes. */
void sb__window_spill(sb__upstream_t* up, int route);
/* Frees the window (the sink closes). */
void sb__window_clear(sb__upstream_t* up);
/* The stall timer's callback: a live stream held above the watermark too long turns
 * to the spool. */
void sb__window_on_stall(uv_timer_t* t);

#endif /* SB_SERVICE_WINDOW_H */
