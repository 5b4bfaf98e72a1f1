/*
 * transport.h - how send-email delivers an email (the book's nodemailer
 * transport): pickup (.eml files in a directory) or smtp (libcurl).
 */
#ifndef SEND_EMAIL_TRANSPORT_H
#define SEND_EMAIL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One email. text or html may be NULL, not both. */
typedef struct email {
  const char *id;        /* unique per Send command: names the file, the Message-ID */
  const char *from;
  const char *to;        /* one address or a comma-separated list */
  const char *subject;
  const char *text;
  const char *html;
} email;

typedef struct transport transport;
struct transport {
  const char *name;
  /* Deliver e. Returns 0, or -1 with the reason in err. */
  int (*send)(transport *t, const email *e, char *err, size_t errlen);
  void (*destroy)(transport *t);
};

/* pickup: one RFC 5322 file <id>.eml per email in `directory` (created when
 * missing), written under a temporary name and renamed. NULL with err. */
transport *pickup_transport_new(const char *directory, char *err, size_t errlen);

typedef enum smtp_tls {
  SMTP_TLS_OFF = 0,        /* plain text */
  SMTP_TLS_TRY = 1,        /* STARTTLS when the server offers it */
  SMTP_TLS_REQUIRED = 2    /* STARTTLS or smtps://, else no delivery */
} smtp_tls;

typedef struct smtp_settings {
  const char *url;         /* smtp://host[:port] or smtps://host[:port] */
  const char *username;    /* NULL: no authentication */
  const char *password;
  smtp_tls tls;
  bool verify;             /* check the server's certificate and name */
  const char *ca_file;     /* NULL: the system's CA store */
  int64_t timeout_ms;
  int64_t connect_timeout_ms;
} smtp_settings;

/* smtp: through libcurl. NULL with err. */
transport *smtp_transport_new(const smtp_settings *s, char *err, size_t errlen);

#endif /* SEND_EMAIL_TRANSPORT_H */
