/*
 * email_template.h - the registration email, rendered from templates the
 * operator sets in the [identity] section.
 *
 * Each part (subject, text, html) is a template with the placeholders
 * {{email}}, {{userId}} and {{appName}}. A part comes from its INI key, where
 * \n, \t and \\ are escapes (an INI value is one line), or, for text and
 * html, from a file named by the *_file key (relative to the INI file's
 * directory: config_path()), read as it is. In html, the
 * values are HTML-escaped. Templates are checked when the plugin starts: an
 * unknown placeholder, an unterminated one, a line break in the subject or
 * text that is not UTF-8 refuses the configuration.
 */
#ifndef IDENTITY_EMAIL_TEMPLATE_H
#define IDENTITY_EMAIL_TEMPLATE_H

#include <stddef.h>

#include <comphost/plugin.h>

typedef struct email_template {
  char *app_name;
  char *subject;
  char *text;
  char *html;
} email_template;

typedef struct rendered_email {
  char *subject;
  char *text;
  char *html;
} rendered_email;

/* Read and check the templates of the instance. Returns 0, or -1 with a
 * reason in err (and *t released). */
int email_template_load(ch_ctx *ctx, email_template *t, char *err, size_t errlen);

void email_template_free(email_template *t);

/* Render the email of a user. Returns 0, or -1 when out of memory. */
int email_template_render(const email_template *t, const char *email, const char *user_id,
                          rendered_email *out);

void rendered_email_free(rendered_email *e);

#endif /* IDENTITY_EMAIL_TEMPLATE_H */
