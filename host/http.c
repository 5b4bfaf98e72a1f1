/* http.c - a small HTTP listener (libmicrohttpd) for /metrics and /healthz. */
#include "http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "config.h"
#include "log.h"

struct chd_http {
  struct MHD_Daemon *daemon;
  chd_http_handler handler;
  void *arg;
  char address[96];
};

/* libmicrohttpd's messages: the last one explains a failed start. */
static char last_message[512];

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
  size_t n;

  (void)cls;
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  n = strlen(last_message);
  while (n > 0 && (last_message[n - 1] == '\n' || last_message[n - 1] == ' '))
    last_message[--n] = '\0';
  chd_log_debug("http: %s", last_message);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **req_cls)
{
  chd_http *h = cls;
  struct MHD_Response *resp;
  const char *type = "text/plain; charset=utf-8";
  char *body = NULL;
  int status;
  enum MHD_Result rc;

  (void)version;
  (void)upload_data;
  if (!*req_cls) {          /* the headers are in: answer on the next call */
    *req_cls = h;
    return MHD_YES;
  }
  if (*upload_data_size) {  /* a body we do not want */
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
    status = MHD_HTTP_METHOD_NOT_ALLOWED;
    body = strdup("only GET and HEAD\n");
  } else {
    status = h->handler(h->arg, url, &body, &type);
  }
  resp = MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (char *)"",
                                         body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  rc = MHD_queue_response(conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return rc;
}

chd_http *chd_http_start(const char *listen, chd_http_handler handler, void *arg,
                         char *err, size_t errlen)
{
  struct addrinfo *ai = NULL;
  char host[64];
  unsigned flags = MHD_USE_ERROR_LOG;
  const union MHD_DaemonInfo *info;
  chd_http *h;
  int port;

  if (chd_parse_listen_addr(listen, "http_listen", host, &port, &ai, err, errlen) != 0)
    return NULL;
  h = calloc(1, sizeof *h);
  if (!h) {
    freeaddrinfo(ai);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  h->handler = handler;
  h->arg = arg;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  last_message[0] = '\0';
  /* no thread: the supervisor runs it (chd_http_run) */
  h->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, answer, h,
                               MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                               MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->daemon) {
    snprintf(err, errlen, "cannot listen on %s for HTTP: %s", listen,
             last_message[0] ? last_message : "libmicrohttpd refused to start");
    free(h);
    return NULL;
  }
  info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  snprintf(h->address, sizeof h->address, "%s%s%s:%u", strchr(host, ':') ? "[" : "", host,
           strchr(host, ':') ? "]" : "", info ? (unsigned)info->port : (unsigned)port);
  return h;
}

void chd_http_run(chd_http *h, int timeout_ms)
{
  MHD_run_wait(h->daemon, timeout_ms);
}

const char *chd_http_address(const chd_http *h)
{
  return h->address;
}

void chd_http_close_in_child(chd_http *h)
{
  const union MHD_DaemonInfo *info;

  if (!h)
    return;
  info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_LISTEN_FD);
  if (info && info->listen_fd >= 0)
    close(info->listen_fd);
}

void chd_http_stop(chd_http *h)
{
  if (!h)
    return;
  MHD_stop_daemon(h->daemon);
  free(h);
}
