/*
 * proxy.h - a TCP proxy between a host under test and PostgreSQL, that the
 * test can cut: the host loses its connections and cannot open new ones
 * until the test lets it through again. It runs in a child process.
 */
#ifndef CH_PROXY_H
#define CH_PROXY_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ch_proxy {
  pid_t pid;
  int port;                    /* where it listens, on 127.0.0.1 */
  int control;                 /* commands to the child */
  int answer;                  /* its acknowledgements */
} ch_proxy;

/* Listen on a free port of 127.0.0.1 and forward to host:port. Fails the
 * test when it cannot. */
void ch_proxy_start(ch_proxy *p, const char *host, int port);

/* Close every connection and refuse new ones (they are accepted and closed
 * at once); returns when done. */
void ch_proxy_cut(ch_proxy *p);

/* Forward new connections again. */
void ch_proxy_resume(ch_proxy *p);

/* End the child. */
void ch_proxy_stop(ch_proxy *p);

/* `url` (a libpq connection string) with its host and port replaced by the
 * proxy's, into out; *host and *port of the original (host NULL when not
 * needed). */
void ch_proxy_url(const char *url, int port, char *out, size_t size);
void ch_proxy_target(const char *url, char *host, size_t size, int *port);

#endif /* CH_PROXY_H */
