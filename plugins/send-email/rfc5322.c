/* rfc5322.c - an email as an Internet message (RFC 5322 with MIME). */
#define _POSIX_C_SOURCE 200809L
#include "rfc5322.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void put_base64(strbuf *b, const unsigned char *s, size_t n)
{
  static const char digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)s[i] << 16;
    char out[4];
    if (i + 1 < n)
      v |= (unsigned)s[i + 1] << 8;
    if (i + 2 < n)
      v |= s[i + 2];
    out[0] = digits[(v >> 18) & 63];
    out[1] = digits[(v >> 12) & 63];
    out[2] = i + 1 < n ? digits[(v >> 6) & 63] : '=';
    out[3] = i + 2 < n ? digits[v & 63] : '=';
    strbuf_put(b, out, 4);
  }
}

/*
 * A body in quoted-printable (RFC 2045 6.7): lines of at most 76 characters
 * with soft breaks, '=' and bytes outside printable ASCII encoded, a space or
 * tab at the end of a line encoded; "\n" and "\r\n" both end a line.
 */
static void put_quoted_printable(strbuf *b, const char *text)
{
  const unsigned char *p = (const unsigned char *)text;

  while (*p) {
    size_t n = strcspn((const char *)p, "\n"), end = n, col = 0;

    if (end > 0 && p[end - 1] == '\r')
      end--;
    for (size_t i = 0; i < end; i++) {
      unsigned char c = p[i];
      char tok[4];
      size_t k = 1;
      bool blank = c == ' ' || c == '\t';

      if ((c >= 33 && c <= 126 && c != '=') || (blank && i + 1 < end)) {
        tok[0] = (char)c;
      } else {
        snprintf(tok, sizeof tok, "=%02X", c);
        k = 3;
      }
      if (col + k > 75) {
        strbuf_put(b, "=\r\n", 3);
        col = 0;
      }
      strbuf_put(b, tok, k);
      col += k;
    }
    strbuf_put(b, "\r\n", 2);
    p += n;
    if (*p == '\n')
      p++;
  }
}

/* Printable ASCII only, and short enough for one header line. */
static bool plain_ascii(const char *s)
{
  size_t n = 0;

  for (; *s; s++, n++)
    if ((unsigned char)*s < 32 || (unsigned char)*s > 126)
      return false;
  return n <= 900;
}

/* Subject, as RFC 2047 encoded-words of whole UTF-8 characters when needed. */
static void put_subject(strbuf *b, const char *subject)
{
  const unsigned char *p = (const unsigned char *)subject;
  size_t left = strlen(subject);

  if (plain_ascii(subject)) {
    strbuf_putf(b, "Subject: ");
    strbuf_puts(b, subject);
    strbuf_put(b, "\r\n", 2);
    return;
  }
  strbuf_puts(b, "Subject:");
  while (left > 0) {
    size_t n = left < 45 ? left : 45;
    while (n < left && n > 1 && (p[n] & 0xC0) == 0x80)
      n--;
    strbuf_puts(b, " =?UTF-8?B?");
    put_base64(b, p, n);
    strbuf_puts(b, "?=");
    p += n;
    left -= n;
    if (left > 0)
      strbuf_put(b, "\r\n", 2);
  }
  strbuf_put(b, "\r\n", 2);
}

/* "Name: value", folded after commas once a line is long (a To list). */
static void put_address_header(strbuf *b, const char *name, const char *value)
{
  size_t col = strlen(name) + 2;

  strbuf_puts(b, name);
  strbuf_puts(b, ": ");
  for (const char *s = value; *s; s++) {
    strbuf_put(b, s, 1);
    col++;
    if (*s == ',' && col > 70 && s[1]) {
      strbuf_put(b, "\r\n", 2);
      col = 0;
    }
  }
  strbuf_put(b, "\r\n", 2);
}

static void put_date(strbuf *b, time_t now)
{
  static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  struct tm tm;

  if (!gmtime_r(&now, &tm)) {
    b->failed = true;
    return;
  }
  strbuf_putf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
       months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* s with everything but letters, digits and '-' left out, at most size-1. */
static void token(const char *s, char *out, size_t size)
{
  size_t n = 0;

  for (; s && *s && n + 1 < size; s++)
    if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
        *s == '-')
      out[n++] = *s;
  out[n] = '\0';
}

static bool is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Is [s, s+n) an addr-spec we can hand to a server: local@domain, no space,
 * no bracket, comma or quote? */
static bool valid_addr(const char *s, size_t n)
{
  const char *at = memchr(s, '@', n);

  if (!at || at == s || at == s + n - 1)
    return false;
  for (size_t i = 0; i < n; i++)
    if (is_space(s[i]) || strchr("<>,\"()[];", s[i]))
      return false;
  return true;
}

int rfc5322_addresses(const char *list, int (*each)(void *arg, const char *addr), void *arg,
                      char *err, size_t errlen)
{
  const char *p = list;
  int count = 0;

  while (*p) {
    const char *start = p, *end, *lt = NULL, *gt = NULL, *addr;
    bool quoted = false;
    size_t n;
    char *copy;
    int stop;

    for (; *p; p++) {
      if (quoted) {
        if (*p == '\\' && p[1])
          p++;
        else if (*p == '"')
          quoted = false;
      } else if (*p == '"') {
        quoted = true;
      } else if (*p == '<') {
        lt = p;
        gt = NULL;
      } else if (*p == '>' && lt) {
        gt = p;
      } else if (*p == ',' && (!lt || gt)) {
        break;
      }
    }
    end = p;
    if (*p == ',')
      p++;
    while (start < end && is_space(*start))
      start++;
    while (end > start && is_space(end[-1]))
      end--;
    if (start == end)
      continue;
    if (lt) {
      if (!gt) {
        snprintf(err, errlen, "'%.*s' is not an email address", (int)(end - start), start);
        return -1;
      }
      addr = lt + 1;
      n = (size_t)(gt - addr);
    } else {
      addr = start;
      n = (size_t)(end - start);
    }
    if (!valid_addr(addr, n)) {
      snprintf(err, errlen, "'%.*s' is not an email address", (int)(end - start), start);
      return -1;
    }
    if (!(copy = strndup(addr, n))) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    stop = each ? each(arg, copy) : 0;
    free(copy);
    count++;
    if (stop)
      break;
  }
  return count;
}

/* The domain of the first address of a list, into out. */
static int first_domain(void *arg, const char *addr)
{
  char *out = arg;

  snprintf(out, 256, "%s", strchr(addr, '@') + 1);
  return 1;
}

char *rfc5322_compose(const email *e, time_t now, char *err, size_t errlen)
{
  const char *headers[][2] = { { "from", e->from }, { "to", e->to }, { "subject", e->subject } };
  char domain[256] = "", id[80], boundary[100];
  bool both = e->text && e->html;
  strbuf b = {0};
  char *text;
  int n;

  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    if (!headers[i][1]) {
      snprintf(err, errlen, "no %s", headers[i][0]);
      return NULL;
    }
    if (strpbrk(headers[i][1], "\r\n")) {
      snprintf(err, errlen, "%s contains a line break", headers[i][0]);
      return NULL;
    }
  }
  if ((n = rfc5322_addresses(e->to, NULL, NULL, err, errlen)) < 0)
    return NULL;
  if (n == 0) {
    snprintf(err, errlen, "no address in to");
    return NULL;
  }
  if ((n = rfc5322_addresses(e->from, first_domain, domain, err, errlen)) < 0)
    return NULL;
  if (n == 0) {
    snprintf(err, errlen, "no address in from");
    return NULL;
  }
  token(e->id, id, sizeof id);
  if (!*id)
    snprintf(id, sizeof id, "%ld", (long)now);
  snprintf(boundary, sizeof boundary, "=_comphost_%s", id);

  put_address_header(&b, "From", e->from);
  put_address_header(&b, "To", e->to);
  put_subject(&b, e->subject);
  put_date(&b, now);
  strbuf_puts(&b, "Message-ID: <");
  strbuf_puts(&b, id);
  strbuf_puts(&b, "@");
  strbuf_puts(&b, domain);
  strbuf_puts(&b, ">\r\nMIME-Version: 1.0\r\n");
  if (both)
    strbuf_putf(&b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n"
         "This is a message in MIME format.\r\n\r\n--%s\r\n", boundary, boundary);
  if (e->text || !e->html) {
    strbuf_puts(&b, "Content-Type: text/plain; charset=utf-8\r\n"
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    put_quoted_printable(&b, e->text ? e->text : "");
    if (both)
      strbuf_putf(&b, "\r\n--%s\r\n", boundary);
  }
  if (e->html) {
    strbuf_puts(&b, "Content-Type: text/html; charset=utf-8\r\n"
              "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    put_quoted_printable(&b, e->html);
  }
  if (both)
    strbuf_putf(&b, "\r\n--%s--\r\n", boundary);
  text = strbuf_take(&b);
  if (!text)
    snprintf(err, errlen, "out of memory");
  return text;
}
