/*
 * http.h - a small HTTP listener (libmicrohttpd) for /metrics and /healthz.
 *
 * It runs in the supervisor, on its thread: no thread is started. The
 * supervisor's loop calls chd_http_run(), which waits up to a timeout for
 * requests and answers them, instead of sleeping. Only GET and HEAD are
 * answered; every answer is built by the handler in full.
 */
#ifndef CHD_HTTP_H
#define CHD_HTTP_H

#include <stddef.h>

typedef struct chd_http chd_http;

/*
 * Answer a GET of `path`: return the HTTP status, with a malloc'd body in
 * *body (the listener frees it) and its content type in *content_type.
 */
typedef int (*chd_http_handler)(void *arg, const char *path, char **body,
                                const char **content_type);

/*
 * Listen on `listen` ("HOST:PORT", see chd_parse_listen; port 0 picks a free
 * one). Returns the listener, or NULL with the reason in err.
 */
chd_http *chd_http_start(const char *listen, chd_http_handler handler, void *arg,
                         char *err, size_t errlen);

/* Serve requests for up to timeout_ms (less when a signal comes). */
void chd_http_run(chd_http *h, int timeout_ms);

/* The address it listens on, "HOST:PORT" with the actual port. */
const char *chd_http_address(const chd_http *h);

/* In a child process after fork(): close the listening socket, so that only
 * the supervisor holds it. */
void chd_http_close_in_child(chd_http *h);

/* Stop listening and free. NULL is allowed. */
void chd_http_stop(chd_http *h);

#endif /* CHD_HTTP_H */
