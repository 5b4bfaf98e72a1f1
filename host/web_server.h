/*
 * web_server.h - serving a site: the applications of one `listen` address.
 *
 * A site worker is a process like a plugin worker (worker.h): it connects to
 * the message store and the view database (one connection each, shared by
 * the site's applications, which are called one at a time), runs the
 * applications' migrations, init() and start(), opens its own listening
 * socket on the site's address with SO_REUSEPORT, reports ready and waits
 * for the go. Then libmicrohttpd, polled from this one thread
 * (MHD_run_wait), reads requests; each complete request is answered by one
 * handler call on this thread, so plugins see one call at a time. SIGTERM:
 * stop accepting, finish the requests in hand (up to the shutdown timeout),
 * stop() and destroy() every application, exit 0.
 *
 * What a request goes through is described in comphost/web.h.
 */
#ifndef CHD_WEB_SERVER_H
#define CHD_WEB_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <comphost/web.h>

#include "html.h"
#include "inventory.h"
#include "status.h"
#include "web_session.h"

/* A site: the application instances that share a listen address. */
typedef struct chd_web_site {
  const char *listen;
  size_t *apps;                 /* instance indices, in file order */
  size_t app_count;
  int workers;                  /* the largest `workers` of its applications */
} chd_web_site;

/*
 * Group the inventory's applications into sites and check them: every
 * application has `listen`, no other kind has `listen`, `mount` or a
 * `workers` other than 1, two applications of one site do not share a mount
 * path, and a session secret is configured. Returns 0 (with *sites NULL and
 * *count 0 when there is no application), or -1 with the reason in err.
 * Free with chd_web_sites_free().
 */
int chd_web_sites(const chd_inventory *inv, chd_web_site **sites, size_t *count, char *err,
                  size_t errlen);
void chd_web_sites_free(chd_web_site *sites, size_t count);

/* The mount path of application instance i: the setting, the descriptor's,
 * else "/". */
const char *chd_web_mount(const chd_inventory *inv, size_t i);

typedef struct chd_web_header {
  char *name;
  char *value;
} chd_web_header;

/* One request being answered: what route handlers see through ch_web. */
typedef struct chd_web_call {
  const chd_config *cfg;
  void *conn;                   /* the MHD_Connection */
  ch_request req;
  int status;
  chd_web_header *headers;
  size_t header_count;
  bool content_type_set;        /* by the handler, with header() */
  chd_buf body;
  const char *content_type;     /* set by the writers, static */
  char *location;               /* redirect() */
  int session_op;               /* 0 none, 1 set, 2 clear */
  char session_user[CHD_USER_ID_MAX + 1];
  bool failed;                  /* out of memory while building */
} chd_web_call;

/* Replace the response of c with the host's error page for status. */
void chd_web_error_body(chd_web_call *c, int status, const char *text);

/* The function table behind ch_host->web (web_api.c). */
extern const ch_web_api chd_web_api;

typedef struct chd_web_worker_args {
  const chd_inventory *inv;
  const chd_web_site *site;
  int worker;                   /* 0 .. site->workers - 1 */
  int ready_fd;                 /* -1: no handshake (a restart) */
  int go_fd;
} chd_web_worker_args;

/* Serve the site until told to stop. Returns the process exit code. */
int chd_web_worker_run(const chd_web_worker_args *a);

#endif /* CHD_WEB_SERVER_H */
