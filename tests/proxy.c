/* proxy.c - a TCP proxy between a host under test and PostgreSQL, that the test can cut. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "support.h"

#define MAX_PAIRS 128

typedef struct pair {
  int client, server;
} pair;

static int connect_to(const char *host, int port)
{
  struct addrinfo hints, *res = NULL;
  char service[16];
  int fd;

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof service, "%d", port);
  if (getaddrinfo(host, service, &hints, &res) != 0)
    return -1;
  fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

/* Copy what `from` has to `to`; -1 when either side is done. */
static int forward(int from, int to)
{
  char buf[65536];
  ssize_t n = read(from, buf, sizeof buf);

  if (n <= 0)
    return -1;
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(to, buf + off, (size_t)(n - off));
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    off += w;
  }
  return 0;
}

static void close_pair(pair *p)
{
  close(p->client);
  close(p->server);
  p->client = p->server = -1;
}

/* The child: accept, forward, obey the control pipe. */
static void run(int listener, int control, int answer, const char *host, int port)
{
  pair pairs[MAX_PAIRS];
  bool down = false;

  for (size_t i = 0; i < MAX_PAIRS; i++)
    pairs[i].client = pairs[i].server = -1;
  for (;;) {
    struct pollfd fds[2 + 2 * MAX_PAIRS];
    nfds_t n = 0;

    fds[n++] = (struct pollfd){ listener, POLLIN, 0 };
    fds[n++] = (struct pollfd){ control, POLLIN, 0 };
    for (size_t i = 0; i < MAX_PAIRS; i++) {
      fds[n++] = (struct pollfd){ pairs[i].client, POLLIN, 0 };
      fds[n++] = (struct pollfd){ pairs[i].server, POLLIN, 0 };
    }
    if (poll(fds, n, 1000) < 0 && errno != EINTR)
      _exit(1);
    if (fds[1].revents) {
      char c;
      if (read(control, &c, 1) != 1)
        _exit(0);                  /* the test ended */
      if (c == 'c') {
        down = true;
        for (size_t i = 0; i < MAX_PAIRS; i++)
          if (pairs[i].client >= 0)
            close_pair(&pairs[i]);
      } else {
        down = false;
      }
      if (write(answer, "k", 1) != 1)
        _exit(1);
      continue;
    }
    if (fds[0].revents & POLLIN) {
      int client = accept(listener, NULL, NULL);
      size_t i = 0;
      while (i < MAX_PAIRS && pairs[i].client >= 0)
        i++;
      if (client >= 0 && (down || i == MAX_PAIRS)) {
        close(client);
      } else if (client >= 0) {
        int server = connect_to(host, port);
        if (server < 0) {
          close(client);
        } else {
          pairs[i].client = client;
          pairs[i].server = server;
        }
      }
    }
    for (size_t i = 0; i < MAX_PAIRS; i++) {
      const struct pollfd *c = &fds[2 + 2 * i], *s = &fds[3 + 2 * i];
      if (pairs[i].client < 0)
        continue;
      if ((c->revents && forward(pairs[i].client, pairs[i].server) != 0) ||
          (s->revents && forward(pairs[i].server, pairs[i].client) != 0))
        close_pair(&pairs[i]);
    }
  }
}

void ch_proxy_start(ch_proxy *p, const char *host, int port)
{
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  int listener = socket(AF_INET, SOCK_STREAM, 0), control[2], answer[2], one = 1;

  assert_true(listener >= 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
  assert_int_equal(listen(listener, 64), 0);
  assert_int_equal(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
  assert_int_equal(pipe(control), 0);
  assert_int_equal(pipe(answer), 0);
  p->port = ntohs(addr.sin_port);
  p->pid = fork();
  assert_true(p->pid >= 0);
  if (p->pid == 0) {
    signal(SIGPIPE, SIG_IGN);
    close(control[1]);
    close(answer[0]);
    run(listener, control[0], answer[1], host, port);
    _exit(0);
  }
  close(listener);
  close(control[0]);
  close(answer[1]);
  p->control = control[1];
  p->answer = answer[0];
}

static void command(ch_proxy *p, char c)
{
  char k = 0;

  assert_int_equal(write(p->control, &c, 1), 1);
  assert_int_equal(read(p->answer, &k, 1), 1);
  assert_int_equal(k, 'k');
}

void ch_proxy_cut(ch_proxy *p)
{
  command(p, 'c');
}

void ch_proxy_resume(ch_proxy *p)
{
  command(p, 'r');
}

void ch_proxy_stop(ch_proxy *p)
{
  if (p->pid <= 0)
    return;
  close(p->control);
  close(p->answer);
  kill(p->pid, SIGKILL);
  waitpid(p->pid, NULL, 0);
  p->pid = 0;
}

void ch_proxy_target(const char *url, char *host, size_t size, int *port)
{
  PQconninfoOption *opts = PQconninfoParse(url, NULL);

  assert_non_null(opts);
  snprintf(host, size, "127.0.0.1");
  *port = 5432;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val)
      continue;
    if (!strcmp(o->keyword, "host"))
      snprintf(host, size, "%s", o->val);
    else if (!strcmp(o->keyword, "port"))
      *port = atoi(o->val);
  }
  PQconninfoFree(opts);
}

void ch_proxy_url(const char *url, int port, char *out, size_t size)
{
  PQconninfoOption *opts = PQconninfoParse(url, NULL);
  size_t len = 0;

  assert_non_null(opts);
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val || !strcmp(o->keyword, "host") || !strcmp(o->keyword, "port") ||
        !strcmp(o->keyword, "hostaddr"))
      continue;
    len += (size_t)snprintf(out + len, size - len, "%s='%s' ", o->keyword, o->val);
  }
  snprintf(out + len, size - len, "host='127.0.0.1' port='%d'", port);
  PQconninfoFree(opts);
}
