/*
 * strbuf.h - a growing string, for the book's plugins that compose text:
 * identity's registration email, send-email's RFC 5322 messages, the
 * aggregators' array literals (view_sql.h). Header only, like checks.h.
 *
 * A strbuf starts zeroed: strbuf b = {0}. Every put appends; after an
 * allocation fails the buffer stays failed, and every later put does
 * nothing, so that a caller puts everything and checks once at the end.
 * The text is the caller's: strbuf_take() hands it over, strbuf_release()
 * frees it.
 */
#ifndef COMPHOST_PLUGINS_STRBUF_H
#define COMPHOST_PLUGINS_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <comphost/plugin.h>

typedef struct strbuf {
  char *text;                  /* NUL-terminated; NULL until something is put */
  size_t len, cap;
  bool failed;                 /* an allocation failed */
} strbuf;

/* Room for n more bytes and a NUL; false when the buffer has failed. */
static inline bool strbuf_reserve(strbuf *b, size_t n)
{
  size_t cap;
  char *p;

  if (b->failed)
    return false;
  if (b->len + n + 1 <= b->cap)
    return true;
  cap = b->cap ? b->cap : 256;
  while (b->len + n + 1 > cap)
    cap *= 2;
  if (!(p = realloc(b->text, cap))) {
    b->failed = true;
    return false;
  }
  b->text = p;
  b->cap = cap;
  return true;
}

/* Append the n bytes at s. */
static inline void strbuf_put(strbuf *b, const char *s, size_t n)
{
  if (!strbuf_reserve(b, n))
    return;
  if (n > 0)
    memcpy(b->text + b->len, s, n);
  b->len += n;
  b->text[b->len] = '\0';
}

static inline void strbuf_puts(strbuf *b, const char *s)
{
  strbuf_put(b, s, strlen(s));
}

static inline void strbuf_putf(strbuf *b, const char *fmt, ...) CH_PRINTF(2, 3);

static inline void strbuf_putf(strbuf *b, const char *fmt, ...)
{
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    b->failed = true;
  if (n < 0 || !strbuf_reserve(b, (size_t)n))
    return;
  va_start(ap, fmt);
  vsnprintf(b->text + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* The text, now the caller's to free ("" when nothing was put), and b
 * zeroed; NULL when an allocation failed (the text is freed then). */
static inline char *strbuf_take(strbuf *b)
{
  char *text;

  if (!b->text)
    strbuf_put(b, "", 0);      /* an empty text of its own */
  text = b->failed ? NULL : b->text;
  if (b->failed)
    free(b->text);
  memset(b, 0, sizeof *b);
  return text;
}

/* Free the text and zero b. */
static inline void strbuf_release(strbuf *b)
{
  free(b->text);
  memset(b, 0, sizeof *b);
}

#endif /* COMPHOST_PLUGINS_STRBUF_H */
