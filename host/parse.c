/* parse.c - parsers of the values the host reads (see parse.h). */
#include "parse.h"

#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

int chd_parse_int64(const char *s, int64_t *out)
{
  bool neg = false;
  int64_t v = 0;

  if (!s)
    return -1;
  if (*s == '+' || *s == '-')
    neg = *s++ == '-';
  if (!*s)
    return -1;
  for (; *s; s++) {
    int d;

    if (*s < '0' || *s > '9')
      return -1;
    d = *s - '0';
    /* C division truncates towards zero: (MIN + d) / 10 is rounded up */
    if (neg ? v < (INT64_MIN + d) / 10 : v > (INT64_MAX - d) / 10)
      return -1;
    v = v * 10 + (neg ? -d : d);
  }
  *out = v;
  return 0;
}

int chd_parse_bool(const char *s, bool *out)
{
  static const char *const yes[] = { "true", "yes", "on", "1" };
  static const char *const no[] = { "false", "no", "off", "0" };

  if (!s)
    return -1;
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (!strcasecmp(s, yes[i])) {
      *out = true;
      return 0;
    }
    if (!strcasecmp(s, no[i])) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

int chd_parse_listen(const char *s, char *host, size_t host_size, int *port)
{
  const char *colon, *h;
  size_t hlen;
  int64_t n;

  if (!s || !*s)
    return -1;
  if (s[0] == '[') {                        /* [IPv6]:PORT */
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return -1;
    h = s + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else if ((colon = strrchr(s, ':'))) {   /* HOST:PORT */
    h = s;
    hlen = (size_t)(colon - s);
    if (memchr(s, ':', hlen))
      return -1;                            /* IPv6 needs brackets */
  } else {                                  /* PORT: on the loopback */
    h = "127.0.0.1";
    hlen = strlen(h);
    colon = s - 1;
  }
  if (hlen == 0 || hlen >= host_size || chd_parse_int64(colon + 1, &n) != 0 ||
      colon[1] == '+' || colon[1] == '-' || n < 0 || n > 65535)
    return -1;
  for (size_t i = 0; i < hlen; i++)
    if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != ':' && h[i] != '-')
      return -1;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = (int)n;
  return 0;
}

int chd_parse_listen_addr(const char *listen, const char *key, char host_out[64],
                          int *port_out, struct addrinfo **out, char *err, size_t errlen)
{
  struct addrinfo hints;
  char own[64], *host = host_out ? host_out : own, port_text[8];
  int port, gai;

  *out = NULL;
  if (chd_parse_listen(listen, host, 64, &port) != 0) {
    snprintf(err, errlen, "%s '%s' is not HOST:PORT", key, listen);
    return -1;
  }
  if (!strcmp(host, "localhost"))
    snprintf(host, 64, "127.0.0.1");
  if (port_out)
    *port_out = port;
  snprintf(port_text, sizeof port_text, "%d", port);
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  hints.ai_socktype = SOCK_STREAM;
  if ((gai = getaddrinfo(host, port_text, &hints, out)) != 0) {
    snprintf(err, errlen, "%s '%s': '%s' is not an IP address (%s)", key, listen, host,
             gai_strerror(gai));
    *out = NULL;
    return -1;
  }
  return 0;
}
