/* html.c - a growing byte buffer, and the escaping writers of HTML. */
#include "html.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(chd_buf *b, size_t more)
{
  size_t want, cap;
  char *p;

  if (b->failed)
    return false;
  if (more > (size_t)-1 / 2 - b->len) {
    b->failed = true;
    return false;
  }
  want = b->len + more + 1;
  if (want <= b->cap)
    return true;
  cap = b->cap ? b->cap : 256;
  while (cap < want)
    cap *= 2;
  p = realloc(b->data, cap);
  if (!p) {
    b->failed = true;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void chd_buf_add(chd_buf *b, const char *s, size_t n)
{
  if (!grow(b, n))
    return;
  if (n)
    memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void chd_buf_adds(chd_buf *b, const char *s)
{
  if (s)
    chd_buf_add(b, s, strlen(s));
}

void chd_buf_vaddf(chd_buf *b, const char *fmt, va_list ap)
{
  va_list copy;
  int n;

  va_copy(copy, ap);
  n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  if (n < 0) {
    b->failed = true;
    return;
  }
  if (!grow(b, (size_t)n))
    return;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void chd_buf_addf(chd_buf *b, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  chd_buf_vaddf(b, fmt, ap);
  va_end(ap);
}

void chd_buf_reset(chd_buf *b)
{
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

char *chd_buf_detach(chd_buf *b, size_t *len)
{
  char *d;

  if (!b->data)
    grow(b, 0);
  if (b->data)
    b->data[b->len] = '\0';
  d = b->data;
  if (len)
    *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return d;
}

void chd_buf_free(chd_buf *b)
{
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* Write s, replacing the characters that need it with entities. */
static void escape(chd_buf *b, const char *s, bool attr)
{
  const char *run = s;

  if (!s)
    return;
  for (; *s; s++) {
    const char *ent = NULL;

    switch (*s) {
    case '&':  ent = "&amp;"; break;
    case '<':  ent = "&lt;"; break;
    case '>':  ent = "&gt;"; break;
    case '"':  ent = "&quot;"; break;
    case '\'': ent = "&#39;"; break;
    case '\n': ent = attr ? "&#10;" : NULL; break;
    case '\r': ent = attr ? "&#13;" : NULL; break;
    case '\t': ent = attr ? "&#9;" : NULL; break;
    default: break;
    }
    if (ent) {
      chd_buf_add(b, run, (size_t)(s - run));
      chd_buf_adds(b, ent);
      run = s + 1;
    }
  }
  chd_buf_add(b, run, (size_t)(s - run));
}

void chd_html_txt(chd_buf *b, const char *s)
{
  escape(b, s, false);
}

void chd_html_attr(chd_buf *b, const char *s)
{
  escape(b, s, true);
}

void chd_html_url(chd_buf *b, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";

  if (!s)
    return;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;

    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '~') {
      chd_buf_add(b, s, 1);
    } else {
      char e[3] = { '%', hex[c >> 4], hex[c & 15] };
      chd_buf_add(b, e, 3);
    }
  }
}
