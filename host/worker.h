/*
 * worker.h - one plugin instance in its own process.
 *
 * The worker connects to the message store (and the view database), applies
 * the plugin's migrations, calls init(), loads every subscription's position,
 * calls start() and then, when started with a handshake, reports 'R' (ready)
 * or 'F' and a reason on ready_fd and waits for 'G' on go_fd: so no message
 * is handled until every instance of the host is ready. Then the
 * subscriptions' loop until SIGTERM or SIGINT: finish the message in hand,
 * save every position, stop(), destroy(), exit 0.
 */
#ifndef CHD_WORKER_H
#define CHD_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "loader.h"
#include "status.h"

/* Exit codes of a worker process. */
#define CHD_EXIT_OK 0
#define CHD_EXIT_SOFTWARE 70   /* an internal error */
#define CHD_EXIT_CONFIG 78     /* init, start, migrations or settings failed */

typedef struct chd_worker_args {
  const chd_config *cfg;
  const chd_instance_config *inst;
  const chd_plugin *plugin;
  int ready_fd;                /* -1: no handshake (a restart) */
  int go_fd;
  /* per subscription: the global position of a message that crashed the
   * worker again and again, so that subscription must not run; 0 if none */
  const int64_t *poisoned;
  const int64_t *poisoned_slot;  /* its consumer group slot (group_member = auto) */
  const char *poison_reason;
} chd_worker_args;

/* Run the instance until told to stop. Returns the process exit code. */
int chd_worker_run(const chd_worker_args *a);

/*
 * The supervisor's handshake, for every kind of worker (web_server.c too).
 * chd_worker_refuse logs `why` for `instance` and, when ready_fd >= 0,
 * reports 'F' and the reason on it; it returns CHD_EXIT_CONFIG.
 * chd_worker_handshake reports 'R' on ready_fd and waits for 'G' on go_fd
 * (closing both), giving up when *stop becomes non-zero; returns 0, or -1
 * when the supervisor gave up on the worker. Without a handshake
 * (ready_fd < 0) it returns 0 at once.
 */
int chd_worker_refuse(int ready_fd, const char *instance, const char *why);
int chd_worker_handshake(int ready_fd, int go_fd, const volatile sig_atomic_t *stop);

#endif /* CHD_WORKER_H */
