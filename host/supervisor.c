/* supervisor.c - the parent process: one worker per plugin instance. */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "monitor.h"
#include "status.h"
#include "subscription.h"
#include "web_server.h"
#include "worker.h"

#define FIRST_BACKOFF_MS 1000
#define STABLE_RUN_MS 30000
#define RELOAD_CHECK_TIMEOUT_MS 60000

typedef struct slot {
  pid_t pid;                      /* 0 when not running */
  int ready_fd, go_fd;            /* supervisor's ends, -1 when closed */
  int64_t started_ms;
  int64_t next_start_ms;          /* when to restart; 0 = not scheduled */
  int64_t backoff_ms;
  int restarts;
  int crash_sub;                  /* the message of the last crash ... */
  int64_t crash_position;
  int crash_count;                /* ... and how often in a row */
  int64_t poisoned[CHD_STATUS_MAX_SUBS];
  int64_t poisoned_slot[CHD_STATUS_MAX_SUBS];
  char poison_reason[512];
} slot;

/*
 * What a slot runs. The first inv->count units are the instances, in file
 * order, so statuses line up with instances for the monitor: a plugin
 * instance runs its worker; the first application of a site runs the site's
 * worker 0, and the site's other applications run nothing of their own
 * (`hosted`: their status mirrors the first one's). Units after those are
 * the sites' workers 1 and up.
 */
typedef struct unit {
  size_t inst;                    /* instance index (of the site's first app) */
  const chd_web_site *site;       /* NULL for a plugin worker */
  int web_worker;
  bool hosted;
} unit;

static unit *units;
static size_t n_units;

/* Which site worker status i belongs to, for /metrics (status.h). */
static void mark_unit(chd_status *st, size_t i)
{
  st->site_inst = units[i].site && !units[i].hosted ? (int)units[i].inst : -1;
  st->web_worker = units[i].web_worker;
}
static chd_web_site *sites;
static size_t n_sites;

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t hup_received;

/* for SIGHUP: the command line to execute again (chd_supervisor_set_reexec) */
static char **reexec_argv;
static const char *reexec_plugin_dir;

static void on_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

static void on_hup(int sig)
{
  (void)sig;
  hup_received = 1;
}

static void install_signals(void)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_hup;
  sigaction(SIGHUP, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
  /* a re-executed host starts with SIGHUP blocked: one that came meanwhile
   * is delivered now, to the handler */
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGHUP);
  sigprocmask(SIG_UNBLOCK, &sa.sa_mask, NULL);
}

static void close_fd(int *fd)
{
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

/* Start the worker of instance i. With a handshake it waits for the go. */
static int spawn(const chd_inventory *inv, slot *slots, chd_status *status, size_t i,
                 int handshake)
{
  int ready[2] = { -1, -1 }, go[2] = { -1, -1 };
  pid_t parent = getpid(), pid;
  slot *sl = &slots[i];
  chd_log_fields f = { inv->cfg.instances[units[i].inst].name, NULL, NULL, NULL };

  if (units[i].hosted)
    return 0;
  if (handshake && (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0)) {
    chd_log(CH_LOG_ERROR, &f, "cannot create pipes: %s", strerror(errno));
    close_fd(&ready[0]);
    close_fd(&ready[1]);
    return -1;
  }
  memset(&status[i], 0, sizeof status[i]);
  status[i].restarts = sl->restarts;
  mark_unit(&status[i], i);
  fflush(NULL);      /* nothing buffered may be written twice */
  pid = fork();
  if (pid < 0) {
    chd_log(CH_LOG_ERROR, &f, "cannot fork: %s", strerror(errno));
    close_fd(&ready[0]);
    close_fd(&ready[1]);
    close_fd(&go[0]);
    close_fd(&go[1]);
    return -1;
  }
  if (pid == 0) {
    chd_worker_args a;
    int rc;

    /* no orphan keeps working beside a restarted host */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(CHD_EXIT_SOFTWARE);
    signal(SIGHUP, SIG_DFL);
    chd_monitor_child();
    for (size_t j = 0; j < n_units; j++) {
      close_fd(&slots[j].ready_fd);
      close_fd(&slots[j].go_fd);
    }
    close_fd(&ready[0]);
    close_fd(&go[1]);
    chd_status_self = &status[i];
    status[i].pid = getpid();
    if (units[i].site) {
      chd_web_worker_args wa;

      memset(&wa, 0, sizeof wa);
      wa.inv = inv;
      wa.site = units[i].site;
      wa.worker = units[i].web_worker;
      wa.ready_fd = ready[1];
      wa.go_fd = go[0];
      exit(chd_web_worker_run(&wa));
    }
    memset(&a, 0, sizeof a);
    a.cfg = &inv->cfg;
    a.inst = &inv->cfg.instances[i];
    a.plugin = &inv->plugins[i];
    a.ready_fd = ready[1];
    a.go_fd = go[0];
    a.poisoned = sl->poisoned;
    a.poisoned_slot = sl->poisoned_slot;
    a.poison_reason = sl->poison_reason[0] ? sl->poison_reason : NULL;
    rc = chd_worker_run(&a);
    /* exit, not _exit: leak checkers look at workers too */
    exit(rc);
  }
  close_fd(&ready[1]);
  close_fd(&go[0]);
  sl->pid = pid;
  sl->ready_fd = ready[0];
  sl->go_fd = go[1];
  sl->started_ms = chd_now_ms();
  sl->next_start_ms = 0;
  chd_log(CH_LOG_DEBUG, &f, "worker started%s", units[i].site ? " (site)" : "");
  return 0;
}

static slot *slot_of(slot *slots, size_t n, pid_t pid)
{
  for (size_t i = 0; i < n; i++)
    if (slots[i].pid == pid)
      return &slots[i];
  return NULL;
}

/* "exited with code 0 (cpu 1.20 s user, 0.10 s sys; max rss 9120 KiB)" */
static void describe_exit(int wstatus, const struct rusage *ru, char *buf, size_t size)
{
  size_t n;

  if (WIFSIGNALED(wstatus))
    snprintf(buf, size, "killed by signal %d (%s)%s", WTERMSIG(wstatus),
             strsignal(WTERMSIG(wstatus)), WCOREDUMP(wstatus) ? ", core dumped" : "");
  else
    snprintf(buf, size, "exited with code %d", WEXITSTATUS(wstatus));
  n = strlen(buf);
  snprintf(buf + n, size - n, " (cpu %ld.%02ld s user, %ld.%02ld s sys; max rss %ld KiB)",
           (long)ru->ru_utime.tv_sec, (long)ru->ru_utime.tv_usec / 10000,
           (long)ru->ru_stime.tv_sec, (long)ru->ru_stime.tv_usec / 10000, ru->ru_maxrss);
}

/* A worker ended while the host runs: log it, count crashes, plan a restart. */
static void on_worker_exit(const chd_inventory *inv, slot *sl, size_t i, chd_status *st,
                           int wstatus, const struct rusage *ru)
{
  const chd_instance_config *inst = &inv->cfg.instances[units[i].inst];
  const ch_plugin_desc *d = &inv->plugins[units[i].inst].desc;
  chd_log_fields f = { inst->name, NULL, NULL, NULL };
  int64_t now = chd_now_ms();
  char how[240], subscriber[256];

  describe_exit(wstatus, ru, how, sizeof how);
  if (st->in_handler) {
    int sub = st->sub_index;

    if (inst->group_auto && st->slot >= 0)
      snprintf(subscriber, sizeof subscriber, "%s:%" PRId64, d->subscriptions[sub].subscriber_id,
               (int64_t)st->slot);
    else
      chd_sub_effective_id(&d->subscriptions[sub], inst, subscriber, sizeof subscriber);
    f.subscriber = subscriber;
    chd_log(CH_LOG_ERROR, &f, "worker %d %s while handling %s at global position %" PRId64
            " of stream %s", (int)sl->pid, how, st->type, st->global_position, st->stream);
    if (sl->crash_sub == sub && sl->crash_position == st->global_position) {
      sl->crash_count++;
    } else {
      sl->crash_sub = sub;
      sl->crash_position = st->global_position;
      sl->crash_count = 1;
    }
    if (sl->crash_count >= inv->cfg.max_crash_restarts && sub < CHD_STATUS_MAX_SUBS) {
      sl->poisoned[sub] = st->global_position;
      sl->poisoned_slot[sub] = st->slot;
      snprintf(sl->poison_reason, sizeof sl->poison_reason,
               "the worker crashed %d times on %s in %s (last: %s)", sl->crash_count,
               st->type, st->stream, how);
      chd_log(CH_LOG_ERROR, &f, "subscription stopped at global position %" PRId64 ": %s",
              st->global_position, sl->poison_reason);
    }
  } else if (st->in_request) {
    chd_log(CH_LOG_ERROR, &f, "worker %d %s while serving %s", (int)sl->pid, how,
            st->request);
    st->in_request = 0;
  } else {
    chd_log(CH_LOG_ERROR, &f, "worker %d %s", (int)sl->pid, how);
  }
  sl->pid = 0;
  close_fd(&sl->ready_fd);
  close_fd(&sl->go_fd);
  if (now - sl->started_ms >= STABLE_RUN_MS || sl->backoff_ms == 0)
    sl->backoff_ms = FIRST_BACKOFF_MS;
  else
    sl->backoff_ms = sl->backoff_ms * 2 > inv->cfg.restart_backoff_max_ms
                       ? inv->cfg.restart_backoff_max_ms : sl->backoff_ms * 2;
  sl->next_start_ms = now + sl->backoff_ms;
  sl->restarts++;
  chd_log(CH_LOG_INFO, &f, "restarting in %" PRId64 " ms (restart %d)", sl->backoff_ms,
          sl->restarts);
  chd_status_worker_ended(st, sl->restarts, sl->next_start_ms, how);
}

static void reap(const chd_inventory *inv, slot *slots, chd_status *status, int running)
{
  struct rusage ru;
  int wstatus;
  pid_t pid;

  while ((pid = wait4(-1, &wstatus, WNOHANG, &ru)) > 0) {
    slot *sl = slot_of(slots, n_units, pid);
    size_t i;
    if (!sl)
      continue;
    i = (size_t)(sl - slots);
    if (running) {
      on_worker_exit(inv, sl, i, &status[i], wstatus, &ru);
    } else {
      chd_log_fields f = { inv->cfg.instances[units[i].inst].name, NULL, NULL, NULL };
      char how[240];
      describe_exit(wstatus, &ru, how, sizeof how);
      chd_log(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 ? CH_LOG_INFO : CH_LOG_WARN,
              &f, "worker %d %s", (int)pid, how);
      chd_status_worker_ended(&status[i], status[i].restarts, 0, how);
      sl->pid = 0;
      close_fd(&sl->ready_fd);
      close_fd(&sl->go_fd);
    }
  }
}

static size_t alive(const slot *slots, size_t n)
{
  size_t c = 0;

  for (size_t i = 0; i < n; i++)
    c += slots[i].pid != 0;
  return c;
}

/* SIGTERM every worker, give them shutdown_timeout_ms, then SIGKILL. */
static void stop_all(const chd_inventory *inv, slot *slots, chd_status *status)
{
  int64_t deadline = chd_now_ms() + inv->cfg.shutdown_timeout_ms;

  for (size_t i = 0; i < n_units; i++)
    if (slots[i].pid)
      kill(slots[i].pid, SIGTERM);
  while (alive(slots, n_units) && chd_now_ms() < deadline) {
    reap(inv, slots, status, 0);
    if (alive(slots, n_units))
      chd_sleep_ms(20);
  }
  for (size_t i = 0; i < n_units; i++)
    if (slots[i].pid) {
      chd_log_fields f = { inv->cfg.instances[units[i].inst].name, NULL, NULL, NULL };
      chd_log(CH_LOG_WARN, &f, "worker %d did not stop in %" PRId64 " ms: killing it",
              (int)slots[i].pid, inv->cfg.shutdown_timeout_ms);
      kill(slots[i].pid, SIGKILL);
    }
  while (alive(slots, n_units)) {
    reap(inv, slots, status, 0);
    if (alive(slots, n_units))
      chd_sleep_ms(20);
  }
}

/*
 * Wait until every worker said ready ('R') or why it cannot run ('F...').
 * Returns 0 when all are ready, -1 otherwise (the reasons are logged by the
 * workers themselves).
 */
static int wait_ready(const chd_inventory *inv, slot *slots, chd_status *status)
{
  size_t n = n_units, pending = n;
  char *ready = calloc(n, 1);
  int rc = 0;

  if (!ready)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (units[i].hosted) {
      ready[i] = 1;
      pending--;
    }
  while (pending > 0 && rc == 0 && !stop_requested) {
    struct pollfd *fds = calloc(n, sizeof *fds);
    if (!fds) {
      rc = -1;
      break;
    }
    for (size_t i = 0; i < n; i++) {
      fds[i].fd = ready[i] ? -1 : slots[i].ready_fd;
      fds[i].events = POLLIN;
    }
    if (poll(fds, n, 200) > 0) {
      for (size_t i = 0; i < n; i++) {
        char buf[1600];
        ssize_t r;
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
          continue;
        r = read(slots[i].ready_fd, buf, sizeof buf - 1);
        if (r >= 1 && buf[0] == 'R') {
          ready[i] = 1;
          pending--;
        } else {
          /* 'F' and a reason (logged by the worker), or the worker died */
          chd_log_fields f = { inv->cfg.instances[units[i].inst].name, NULL, NULL, NULL };
          if (r <= 0)
            chd_log(CH_LOG_ERROR, &f, "worker ended before it was ready");
          rc = -1;
        }
      }
    }
    free(fds);
  }
  free(ready);
  (void)status;
  return stop_requested ? -1 : rc;
}

void chd_supervisor_set_reexec(char **argv, const char *plugin_dir_override)
{
  reexec_argv = argv;
  reexec_plugin_dir = plugin_dir_override;
}

static void free_args(char **args)
{
  for (size_t i = 0; args[i]; i++)
    free(args[i]);
}

/*
 * Check the configuration file and its plugins as a new host would load
 * them, with `comphost check --no-db` in a fresh process: a bad plugin
 * cannot hurt the supervisor, and the files are opened anew (a dlopen() here
 * would return the plugins already loaded under the same names). Returns 0
 * when they pass, or -1 with the reason in why.
 */
static int check_config(const char *path, char *why, size_t size)
{
  const char *words[] = { "comphost", "check", "--no-db", "-c", path, "--plugin-dir",
                          reexec_plugin_dir, NULL };
  char *args[8] = { NULL };
  char out[2048];
  size_t len = 0;
  int fds[2], wstatus;
  int64_t deadline = chd_now_ms() + RELOAD_CHECK_TIMEOUT_MS;
  pid_t pid, r;

  /* copied before fork(): the child only execs */
  for (size_t i = 0; words[i] && (i != 5 || reexec_plugin_dir); i++)
    if (!(args[i] = strdup(words[i]))) {
      free_args(args);
      snprintf(why, size, "out of memory");
      return -1;
    }
  if (pipe2(fds, O_CLOEXEC) != 0) {
    snprintf(why, size, "cannot create a pipe: %s", strerror(errno));
    free_args(args);
    return -1;
  }
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    snprintf(why, size, "cannot fork: %s", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    free_args(args);
    return -1;
  }
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

    /* the inventory goes nowhere, the reason of a refusal into the pipe */
    if (null < 0 || dup2(null, STDOUT_FILENO) < 0 || dup2(fds[1], STDERR_FILENO) < 0)
      _exit(CHD_EXIT_SOFTWARE);
    execv("/proc/self/exe", args);
    _exit(127);
  }
  close(fds[1]);
  free_args(args);
  for (;;) {
    struct pollfd pfd = { fds[0], POLLIN, 0 };
    int64_t left = deadline - chd_now_ms();
    ssize_t got;

    if (left <= 0 || stop_requested) {
      kill(pid, SIGKILL);
      break;
    }
    if (poll(&pfd, 1, (int)(left < 1000 ? left : 1000)) <= 0)
      continue;
    got = read(fds[0], out + len, sizeof out - 1 - len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    len += (size_t)got;
    if (len == sizeof out - 1)
      break;
  }
  close(fds[0]);
  out[len] = '\0';
  while ((r = waitpid(pid, &wstatus, 0)) < 0 && errno == EINTR)
    ;
  if (r < 0) {
    snprintf(why, size, "cannot wait for the check: %s", strerror(errno));
    return -1;
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)
    return 0;
  if (len > 0) {
    /* "comphost: FILE:LINE: ...": the first line, without the program name */
    const char *text = strncmp(out, "comphost: ", 10) == 0 ? out + 10 : out;
    snprintf(why, size, "%.*s", (int)strcspn(text, "\n"), text);
  } else if (WIFSIGNALED(wstatus)) {
    snprintf(why, size, "the check was killed by signal %d (%s)%s", WTERMSIG(wstatus),
             strsignal(WTERMSIG(wstatus)), stop_requested ? " for a stop"
             : chd_now_ms() >= deadline ? " after 60 s" : "");
  } else {
    snprintf(why, size, "the check exited with code %d", WEXITSTATUS(wstatus));
  }
  return -1;
}

/* Nothing of this process but stdin, stdout and stderr passes to the new one. */
static void close_on_exec_all(void)
{
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;

  if (!d)
    return;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name), flags;

    if (fd <= STDERR_FILENO || fd == dirfd(d))
      continue;
    flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && !(flags & FD_CLOEXEC))
      fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  closedir(d);
}

/*
 * SIGHUP. Returns 0 when the host goes on as it is (the new configuration
 * was refused, or a stop came meanwhile), or -1 when the workers were stopped
 * and executing the host again failed. Does not return when it succeeds.
 */
static int reload(const chd_inventory *inv, slot *slots, chd_status *status)
{
  sigset_t hup;
  char why[1024];

  if (!reexec_argv) {
    chd_log_warn("SIGHUP: this host cannot restart itself; restart it to apply changes");
    return 0;
  }
  chd_log_info("SIGHUP: checking %s and its plugins", inv->cfg.path);
  if (check_config(inv->cfg.path, why, sizeof why) != 0) {
    chd_log_error("SIGHUP: not reloading, the running plugins go on: %s", why);
    return 0;
  }
  if (stop_requested)
    return 0;
  chd_log_info("SIGHUP: %s and its plugins are valid: stopping the workers to restart in"
               " place", inv->cfg.path);
  stop_all(inv, slots, status);
  if (stop_requested)
    return 0;
  /* a SIGHUP during the new start waits for the new handler (install_signals) */
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  sigprocmask(SIG_BLOCK, &hup, NULL);
  close_on_exec_all();
  chd_log_info("restarting in place (pid %d)", (int)getpid());
  fflush(NULL);
  execv("/proc/self/exe", reexec_argv);
  chd_log_error("cannot restart in place: executing /proc/self/exe: %s", strerror(errno));
  sigprocmask(SIG_UNBLOCK, &hup, NULL);
  return -1;
}

/* Sites and units (see `unit`). Returns 0, or -1 with the reason logged. */
static int plan_units(const chd_inventory *inv)
{
  char err[1024];
  size_t extra = 0, k;

  if (chd_web_sites(inv, &sites, &n_sites, err, sizeof err) != 0) {
    chd_log_error("%s", err);
    return -1;
  }
  for (size_t s = 0; s < n_sites; s++)
    extra += (size_t)sites[s].workers - 1;
  n_units = inv->count + extra;
  units = calloc(n_units, sizeof *units);
  if (!units) {
    chd_log_error("out of memory");
    return -1;
  }
  for (size_t i = 0; i < inv->count; i++)
    units[i].inst = i;
  k = inv->count;
  for (size_t s = 0; s < n_sites; s++) {
    const chd_web_site *site = &sites[s];
    units[site->apps[0]].site = site;
    for (size_t j = 1; j < site->app_count; j++) {
      units[site->apps[j]].hosted = true;
      units[site->apps[j]].inst = site->apps[0];
    }
    for (int w = 1; w < site->workers; w++, k++) {
      units[k].inst = site->apps[0];
      units[k].site = site;
      units[k].web_worker = w;
    }
  }
  return 0;
}

static void free_units(void)
{
  chd_web_sites_free(sites, n_sites);
  sites = NULL;
  n_sites = 0;
  free(units);
  units = NULL;
  n_units = 0;
}

/* The statuses of applications served by their site's first application's
 * worker follow that worker's. */
static void mirror_hosted(chd_status *status)
{
  for (size_t i = 0; i < n_units; i++) {
    const chd_status *from;
    if (!units[i].hosted)
      continue;
    from = &status[units[i].inst];
    status[i].pid = from->pid;
    status[i].heartbeat_ms = from->heartbeat_ms;
    status[i].state = from->state;
    status[i].restarts = from->restarts;
    status[i].restart_at_ms = from->restart_at_ms;
    memcpy(status[i].last_exit, from->last_exit, sizeof status[i].last_exit);
  }
}

int chd_supervisor_run(const chd_inventory *inv)
{
  chd_status *status;
  slot *slots;
  char err[1024];
  int rc = 0;

  if (plan_units(inv) != 0) {
    free_units();
    return 1;
  }
  status = chd_status_map(n_units);
  slots = calloc(n_units, sizeof *slots);
  if (!status || !slots) {
    chd_log_error("cannot allocate worker state: %s", strerror(errno));
    chd_status_unmap(status, n_units);
    free(slots);
    free_units();
    return CHD_EXIT_SOFTWARE;
  }
  for (size_t i = 0; i < n_units; i++) {
    slots[i].ready_fd = slots[i].go_fd = slots[i].crash_sub = -1;
    mark_unit(&status[i], i);
  }
  install_signals();
  if (chd_monitor_start(inv, status, n_units, err, sizeof err) != 0) {
    chd_log_error("%s", err);
    rc = 1;
    goto out;
  }

  for (size_t i = 0; i < n_units; i++)
    if (spawn(inv, slots, status, i, 1) != 0) {
      stop_all(inv, slots, status);
      rc = CHD_EXIT_SOFTWARE;
      goto out;
    }
  if (wait_ready(inv, slots, status) != 0) {
    /* no go: workers waiting for it see the pipe close and end */
    for (size_t i = 0; i < n_units; i++)
      close_fd(&slots[i].go_fd);
    if (!stop_requested) {
      chd_log_error("not every plugin could start: stopping all of them");
      rc = 1;
    }
    stop_all(inv, slots, status);
    goto out;
  }
  for (size_t i = 0; i < n_units; i++) {
    if (units[i].hosted)
      continue;
    if (write(slots[i].go_fd, "G", 1) != 1)
      chd_log_warn("cannot start worker %d: %s", (int)slots[i].pid, strerror(errno));
    close_fd(&slots[i].go_fd);
    close_fd(&slots[i].ready_fd);
  }
  {
    size_t workers = 0;
    for (size_t i = 0; i < n_units; i++)
      workers += !units[i].hosted;
    chd_log_info("host running: %zu worker%s", workers, workers == 1 ? "" : "s");
  }

  while (!stop_requested) {
    int64_t now;

    reap(inv, slots, status, 1);
    if (hup_received) {
      hup_received = 0;
      if (reload(inv, slots, status) != 0) {
        rc = CHD_EXIT_SOFTWARE;
        goto out;
      }
    }
    now = chd_now_ms();
    for (size_t i = 0; i < n_units && !stop_requested; i++)
      if (!slots[i].pid && slots[i].next_start_ms && now >= slots[i].next_start_ms)
        spawn(inv, slots, status, i, 0);
    mirror_hosted(status);
    chd_monitor_wait(100);
  }
  chd_log_info("stopping: waiting for the workers to finish their message and save positions");
  stop_all(inv, slots, status);
  chd_log_info("host stopped");

out:
  chd_monitor_stop();
  chd_status_unmap(status, n_units);
  free(slots);
  free_units();
  return rc;
}
