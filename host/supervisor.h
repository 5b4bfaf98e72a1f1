/*
 * supervisor.h - the parent process: one worker per plugin instance.
 *
 * Start: fork every worker; each reports ready (or why not) and waits for
 * the go, so a host whose plugins cannot all start starts nothing and exits
 * non-zero. Then: a worker that dies is logged (exit code or signal, and the
 * message it was handling) and restarted with exponential backoff, while the
 * others go on. A worker that dies again and again on the same message has
 * that subscription stopped, as a FAIL would. SIGTERM or SIGINT: every worker
 * finishes the message in hand, saves its positions and exits; then the
 * supervisor exits 0. Workers die with the supervisor (PR_SET_PDEATHSIG).
 * SIGHUP: the configuration file and its plugins are checked anew in a
 * separate process; if that fails, the reason is logged and the workers go
 * on; if it passes, every worker stops as for SIGTERM and the host executes
 * itself again (same pid), loading the new files.
 */
#ifndef CHD_SUPERVISOR_H
#define CHD_SUPERVISOR_H

#include "inventory.h"

/*
 * Remember the command line for SIGHUP: the host re-executes itself with
 * `argv` (kept, not copied) and checks the new configuration with the same
 * plugin_dir_override (--plugin-dir; may be NULL). Without it, SIGHUP is only
 * logged.
 */
void chd_supervisor_set_reexec(char **argv, const char *plugin_dir_override);

/* Run the host until SIGTERM/SIGINT. Returns the process exit code. */
int chd_supervisor_run(const chd_inventory *inv);

#endif /* CHD_SUPERVISOR_H */
