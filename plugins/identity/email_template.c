/* email_template.c - the registration email, rendered from templates. */
#define _POSIX_C_SOURCE 200809L
#include "email_template.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define MAX_TEMPLATE_FILE (1024 * 1024)

static void put_html(strbuf *b, const char *s)
{
  for (; *s; s++) {
    switch (*s) {
    case '&': strbuf_put(b, "&amp;", 5); break;
    case '<': strbuf_put(b, "&lt;", 4); break;
    case '>': strbuf_put(b, "&gt;", 4); break;
    case '"': strbuf_put(b, "&quot;", 6); break;
    case '\'': strbuf_put(b, "&#39;", 5); break;
    default: strbuf_put(b, s, 1); break;
    }
  }
}

static const char *const placeholders[] = { "email", "userId", "appName" };
#define PLACEHOLDER_COUNT (sizeof placeholders / sizeof placeholders[0])

/*
 * Expand the placeholders of tmpl with values (in the order of
 * placeholders[]); HTML-escape them when html. Returns the new string, or
 * NULL: out of memory, or (with a reason in err) a bad placeholder.
 */
static char *expand(const char *tmpl, const char *const values[PLACEHOLDER_COUNT], bool html,
                    char *err, size_t errlen)
{
  strbuf b = {0};
  const char *p = tmpl;

  for (;;) {
    const char *open = strstr(p, "{{"), *close, *name, *end;
    size_t i;

    if (!open) {
      strbuf_put(&b, p, strlen(p));
      break;
    }
    strbuf_put(&b, p, (size_t)(open - p));
    if (!(close = strstr(open + 2, "}}"))) {
      snprintf(err, errlen, "unterminated placeholder at '%.20s'", open);
      strbuf_release(&b);
      return NULL;
    }
    for (name = open + 2; *name == ' '; name++)
      ;
    for (end = close; end > name && end[-1] == ' '; end--)
      ;
    for (i = 0; i < PLACEHOLDER_COUNT; i++)
      if (strlen(placeholders[i]) == (size_t)(end - name) &&
          !strncmp(placeholders[i], name, (size_t)(end - name)))
        break;
    if (i == PLACEHOLDER_COUNT) {
      snprintf(err, errlen, "unknown placeholder '%.*s' (known: {{email}}, {{userId}},"
               " {{appName}})", (int)(close + 2 - open), open);
      strbuf_release(&b);
      return NULL;
    }
    if (html)
      put_html(&b, values[i]);
    else
      strbuf_put(&b, values[i], strlen(values[i]));
    p = close + 2;
  }
  if (b.failed)
    snprintf(err, errlen, "out of memory");
  return strbuf_take(&b);
}

/* An INI value with \n, \t and \\ turned into what they stand for. */
static char *unescape(const char *s, char *err, size_t errlen)
{
  strbuf b = {0};

  for (; *s; s++) {
    if (*s != '\\') {
      strbuf_put(&b, s, 1);
      continue;
    }
    switch (s[1]) {
    case 'n': strbuf_put(&b, "\n", 1); s++; break;
    case 't': strbuf_put(&b, "\t", 1); s++; break;
    case '\\': strbuf_put(&b, "\\", 1); s++; break;
    default:
      snprintf(err, errlen, "unknown escape '\\%c' (use \\n, \\t or \\\\)", s[1] ? s[1] : ' ');
      strbuf_release(&b);
      return NULL;
    }
  }
  if (b.failed)
    snprintf(err, errlen, "out of memory");
  return strbuf_take(&b);
}

static char *read_file(const char *path, char *err, size_t errlen)
{
  FILE *f = fopen(path, "rb");
  strbuf b = {0};
  char chunk[4096];
  size_t n;

  if (!f) {
    snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    strbuf_put(&b, chunk, n);
    if (b.len > MAX_TEMPLATE_FILE) {
      snprintf(err, errlen, "'%s' is larger than %d bytes", path, MAX_TEMPLATE_FILE);
      fclose(f);
      strbuf_release(&b);
      return NULL;
    }
  }
  if (ferror(f)) {
    snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
    fclose(f);
    strbuf_release(&b);
    return NULL;
  }
  fclose(f);
  if (memchr(b.text ? b.text : "", '\0', b.len)) {
    snprintf(err, errlen, "'%s' contains a NUL byte", path);
    strbuf_release(&b);
    return NULL;
  }
  if (b.failed)
    snprintf(err, errlen, "out of memory");
  return strbuf_take(&b);
}

static bool valid_utf8(const char *s)
{
  json_t *j = json_string(s);

  json_decref(j);
  return j != NULL;
}

/*
 * One part: from the file key when it is set (a path relative to the INI
 * file's directory), else from the inline key. Checked by a trial
 * expansion. Returns the template or NULL with err.
 */
static char *load_part(ch_ctx *ctx, const char *key, const char *file_key, bool html,
                       char *err, size_t errlen)
{
  static const char *const trial[PLACEHOLDER_COUNT] = { "a@example.com", "u", "A" };
  const char *file = file_key ? ch_host->config_path(ctx, file_key) : NULL;
  const char *used = file && *file ? file_key : key;
  char why[400];
  char *t, *check = NULL;

  why[0] = '\0';
  if (file_key && !file && ch_host->config_get(ctx, file_key)) {
    snprintf(err, errlen, "%s: %s", file_key, ch_host->last_error(ctx));
    return NULL;
  }
  if (file && *file)
    t = read_file(file, why, sizeof why);
  else
    t = unescape(ch_host->config_get(ctx, key) ? ch_host->config_get(ctx, key) : "", why,
                 sizeof why);
  if (t && !valid_utf8(t)) {
    snprintf(why, sizeof why, "not valid UTF-8");
    free(t);
    t = NULL;
  }
  if (t && !(check = expand(t, trial, html, why, sizeof why))) {
    free(t);
    t = NULL;
  } else if (t) {
    free(check);
  }
  if (!t)
    snprintf(err, errlen, "%s: %s", used, why[0] ? why : "out of memory");
  return t;
}

void email_template_free(email_template *t)
{
  free(t->app_name);
  free(t->subject);
  free(t->text);
  free(t->html);
  memset(t, 0, sizeof *t);
}

int email_template_load(ch_ctx *ctx, email_template *t, char *err, size_t errlen)
{
  const char *app = ch_host->config_get(ctx, "app_name");

  memset(t, 0, sizeof *t);
  if (!(t->app_name = strdup(app ? app : ""))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (!(t->subject = load_part(ctx, "registration_email_subject", NULL, false, err, errlen)) ||
      !(t->text = load_part(ctx, "registration_email_text", "registration_email_text_file",
                            false, err, errlen)) ||
      !(t->html = load_part(ctx, "registration_email_html", "registration_email_html_file",
                            true, err, errlen))) {
    email_template_free(t);
    return -1;
  }
  if (strpbrk(t->subject, "\r\n")) {
    snprintf(err, errlen, "registration_email_subject: a subject is one line");
    email_template_free(t);
    return -1;
  }
  return 0;
}

int email_template_render(const email_template *t, const char *email, const char *user_id,
                          rendered_email *out)
{
  const char *const values[PLACEHOLDER_COUNT] = { email, user_id, t->app_name };
  char err[200];

  memset(out, 0, sizeof *out);
  out->subject = expand(t->subject, values, false, err, sizeof err);
  out->text = expand(t->text, values, false, err, sizeof err);
  out->html = expand(t->html, values, true, err, sizeof err);
  if (!out->subject || !out->text || !out->html) {
    rendered_email_free(out);
    return -1;
  }
  /* a subject stays one line, whatever the address holds */
  for (char *c = out->subject; *c; c++)
    if (*c == '\r' || *c == '\n')
      *c = ' ';
  return 0;
}

void rendered_email_free(rendered_email *e)
{
  free(e->subject);
  free(e->text);
  free(e->html);
  memset(e, 0, sizeof *e);
}
