/*
 * html.h - a growing byte buffer, and the escaping writers of HTML.
 *
 * Every write appends; when memory runs out the buffer keeps what it had
 * and remembers the failure (`failed`), which the caller checks once at the
 * end instead of after every write.
 */
#ifndef CHD_HTML_H
#define CHD_HTML_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct chd_buf {
  char *data;               /* NUL-terminated when not NULL */
  size_t len;
  size_t cap;
  bool failed;              /* a write ran out of memory */
} chd_buf;

void chd_buf_add(chd_buf *b, const char *s, size_t n);
void chd_buf_adds(chd_buf *b, const char *s);
void chd_buf_addf(chd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void chd_buf_vaddf(chd_buf *b, const char *fmt, va_list ap)
  __attribute__((format(printf, 2, 0)));
/* Empty it, keeping the memory. */
void chd_buf_reset(chd_buf *b);
/* Hand the data over (malloc'd, NUL-terminated, never NULL unless out of
 * memory) and empty the buffer. */
char *chd_buf_detach(chd_buf *b, size_t *len);
void chd_buf_free(chd_buf *b);

/* Text: & < > " ' as entities. NULL writes nothing. */
void chd_html_txt(chd_buf *b, const char *s);
/* An attribute value between double quotes: as text, and \n \r \t as
 * character references. */
void chd_html_attr(chd_buf *b, const char *s);
/* Percent-encoding of everything but A-Z a-z 0-9 - . _ ~ */
void chd_html_url(chd_buf *b, const char *s);

#endif /* CHD_HTML_H */
