/*
 * transport_pickup.c - the book's pickup transport: one RFC 5322 file per
 * email in a directory, for development and tests (or a mail system that
 * collects from a pickup directory).
 *
 * The file is written as .<id>.eml.tmp, flushed to disk, then renamed to
 * <id>.eml, so a reader never sees half a message. The name comes from the
 * Send command's id: a command delivered again after a crash rewrites its
 * own file rather than adding a second one.
 *
 * Emails hold personal data: files are created 0640, in a directory created
 * 0750, and a directory that belongs to another user than the host's is
 * refused (someone else could read, replace or redirect the emails).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rfc5322.h"
#include "transport.h"

typedef struct pickup {
  transport base;
  char *dir;
} pickup;

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errlen)
{
  char *p = strdup(path);

  if (!p) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (char *s = p + 1;; s++) {
    if (*s == '/' || !*s) {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the email directory '%s': %s", p, strerror(errno));
        free(p);
        return -1;
      }
      *s = c;
      if (!c)
        break;
    }
  }
  free(p);
  return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int pickup_send(transport *t, const email *e, char *err, size_t errlen)
{
  pickup *pk = (pickup *)t;
  char name[80], *message, *tmp = NULL, *final = NULL;
  size_t n = 0, dirlen = strlen(pk->dir);
  int fd = -1, rc = -1;

  for (const char *s = e->id; s && *s && n + 1 < sizeof name; s++)
    if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
        *s == '-')
      name[n++] = *s;
  name[n] = '\0';
  if (!*name) {
    snprintf(err, errlen, "the email has no id to name its file");
    return -1;
  }
  if (!(message = rfc5322_compose(e, time(NULL), err, errlen)))
    return -1;
  tmp = malloc(dirlen + n + 16);
  final = malloc(dirlen + n + 16);
  if (!tmp || !final) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  sprintf(tmp, "%s/.%s.eml.tmp", pk->dir, name);
  sprintf(final, "%s/%s.eml", pk->dir, name);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0 || write_all(fd, message, strlen(message)) != 0 || fsync(fd) != 0) {
    snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
    goto out;
  }
  if (close(fd) != 0) {
    fd = -1;
    snprintf(err, errlen, "cannot write '%s': %s", tmp, strerror(errno));
    goto out;
  }
  fd = -1;
  if (rename(tmp, final) != 0) {
    snprintf(err, errlen, "cannot rename '%s' to '%s': %s", tmp, final, strerror(errno));
    goto out;
  }
  /* make the rename durable too */
  fd = open(pk->dir, O_RDONLY | O_CLOEXEC);
  if (fd >= 0)
    fsync(fd);
  rc = 0;

out:
  if (fd >= 0)
    close(fd);
  if (rc != 0 && tmp)
    unlink(tmp);
  free(tmp);
  free(final);
  free(message);
  return rc;
}

static void pickup_destroy(transport *t)
{
  pickup *pk = (pickup *)t;

  if (pk) {
    free(pk->dir);
    free(pk);
  }
}

transport *pickup_transport_new(const char *directory, char *err, size_t errlen)
{
  pickup *pk;
  struct stat st;
  size_t len;

  if (!directory || !*directory) {
    snprintf(err, errlen, "no email directory");
    return NULL;
  }
  if (make_dirs(directory, err, errlen) != 0)
    return NULL;
  if (stat(directory, &st) != 0) {
    snprintf(err, errlen, "cannot use the email directory '%s': %s", directory, strerror(errno));
    return NULL;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "the email directory '%s' is not a directory", directory);
    return NULL;
  }
  if (st.st_uid != geteuid()) {
    snprintf(err, errlen, "the email directory '%s' belongs to uid %lu, not to the user"
             " comphost runs as (uid %lu): refused", directory, (unsigned long)st.st_uid,
             (unsigned long)geteuid());
    return NULL;
  }
  if (!(pk = calloc(1, sizeof *pk)) || !(pk->dir = strdup(directory))) {
    free(pk);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  len = strlen(pk->dir);
  while (len > 1 && pk->dir[len - 1] == '/')
    pk->dir[--len] = '\0';
  pk->base.name = "pickup";
  pk->base.send = pickup_send;
  pk->base.destroy = pickup_destroy;
  return &pk->base;
}
