/*
 * transport_smtp.c - delivery to an SMTP server through libcurl.
 *
 * One curl handle per transport, so the connection is kept between emails.
 * The envelope sender is the address of From, the recipients those of To.
 * libcurl does the SMTP dialogue (EHLO, STARTTLS, AUTH, dot-stuffing);
 * CURLOPT_NOSIGNAL keeps it from touching signals, which plugins must not.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "rfc5322.h"
#include "transport.h"

typedef struct smtp {
  transport base;
  CURL *curl;
  char *url, *username, *password, *ca_file;
  smtp_tls tls;
  bool verify;
  long timeout_ms, connect_timeout_ms;
} smtp;

typedef struct upload {
  const char *p;
  size_t left;
} upload;

static size_t read_message(char *out, size_t size, size_t count, void *arg)
{
  upload *u = arg;
  size_t n = size * count;

  if (n > u->left)
    n = u->left;
  memcpy(out, u->p, n);
  u->p += n;
  u->left -= n;
  return n;
}

static int add_recipient(void *arg, const char *addr)
{
  struct curl_slist **list = arg, *l;
  size_t n = strlen(addr) + 3;
  char *s = malloc(n);

  if (!s)
    return 1;
  snprintf(s, n, "<%s>", addr);
  l = curl_slist_append(*list, s);
  free(s);
  if (!l)
    return 1;
  *list = l;
  return 0;
}

static int sender_of(void *arg, const char *addr)
{
  char *out = arg;

  snprintf(out, 320, "<%s>", addr);
  return 1;
}

static int smtp_send(transport *t, const email *e, char *err, size_t errlen)
{
  smtp *s = (smtp *)t;
  struct curl_slist *rcpt = NULL;
  char errbuf[CURL_ERROR_SIZE] = "", sender[320] = "";
  char *message;
  upload u;
  CURLcode rc;
  int n;

  if (!(message = rfc5322_compose(e, time(NULL), err, errlen)))
    return -1;
  if (rfc5322_addresses(e->from, sender_of, sender, err, errlen) < 0) {
    free(message);
    return -1;
  }
  n = rfc5322_addresses(e->to, add_recipient, &rcpt, err, errlen);
  if (n < 0 || !rcpt) {
    if (n >= 0)
      snprintf(err, errlen, "out of memory");
    curl_slist_free_all(rcpt);
    free(message);
    return -1;
  }
  u.p = message;
  u.left = strlen(message);
  curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(s->curl, CURLOPT_MAIL_FROM, sender);
  curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(s->curl, CURLOPT_READFUNCTION, read_message);
  curl_easy_setopt(s->curl, CURLOPT_READDATA, &u);
  curl_easy_setopt(s->curl, CURLOPT_UPLOAD, 1L);
  rc = curl_easy_perform(s->curl);
  /* nothing of this call may outlive it */
  curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, NULL);
  curl_easy_setopt(s->curl, CURLOPT_READDATA, NULL);
  curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, NULL);
  curl_slist_free_all(rcpt);
  free(message);
  if (rc != CURLE_OK) {
    snprintf(err, errlen, "smtp: %s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    return -1;
  }
  return 0;
}

static void smtp_destroy(transport *t)
{
  smtp *s = (smtp *)t;

  if (!s)
    return;
  if (s->curl)
    curl_easy_cleanup(s->curl);
  free(s->url);
  free(s->username);
  free(s->password);
  free(s->ca_file);
  free(s);
  curl_global_cleanup();
}

static char *dup_or_null(const char *s, bool *failed)
{
  char *d;

  if (!s || !*s)
    return NULL;
  if (!(d = strdup(s)))
    *failed = true;
  return d;
}

transport *smtp_transport_new(const smtp_settings *set, char *err, size_t errlen)
{
  static const curl_usessl modes[] = { CURLUSESSL_NONE, CURLUSESSL_TRY, CURLUSESSL_ALL };
  smtp *s;
  bool failed = false;

  if (!set->url || (strncmp(set->url, "smtp://", 7) && strncmp(set->url, "smtps://", 8))) {
    snprintf(err, errlen, "smtp_url: '%s' is not an smtp:// or smtps:// URL",
             set->url ? set->url : "");
    return NULL;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(err, errlen, "cannot initialise libcurl");
    return NULL;
  }
  if (!(s = calloc(1, sizeof *s))) {
    curl_global_cleanup();
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->base.name = "smtp";
  s->base.send = smtp_send;
  s->base.destroy = smtp_destroy;
  s->url = dup_or_null(set->url, &failed);
  s->username = dup_or_null(set->username, &failed);
  s->password = dup_or_null(set->password, &failed);
  s->ca_file = dup_or_null(set->ca_file, &failed);
  s->tls = set->tls;
  s->verify = set->verify;
  s->timeout_ms = (long)set->timeout_ms;
  s->connect_timeout_ms = (long)set->connect_timeout_ms;
  if (failed || !(s->curl = curl_easy_init())) {
    smtp_destroy(&s->base);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  curl_easy_setopt(s->curl, CURLOPT_URL, s->url);
  curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(s->curl, CURLOPT_USE_SSL, (long)modes[s->tls]);
  curl_easy_setopt(s->curl, CURLOPT_SSL_VERIFYPEER, s->verify ? 1L : 0L);
  curl_easy_setopt(s->curl, CURLOPT_SSL_VERIFYHOST, s->verify ? 2L : 0L);
  if (s->ca_file)
    curl_easy_setopt(s->curl, CURLOPT_CAINFO, s->ca_file);
  if (s->username) {
    curl_easy_setopt(s->curl, CURLOPT_USERNAME, s->username);
    curl_easy_setopt(s->curl, CURLOPT_PASSWORD, s->password ? s->password : "");
  }
  if (s->timeout_ms > 0)
    curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, s->timeout_ms);
  if (s->connect_timeout_ms > 0)
    curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
  return &s->base;
}
