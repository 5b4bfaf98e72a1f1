/* web_route.c - the route tables of applications: checking and matching. */
#include "web_route.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

#define MAX_SEGMENTS 32

static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", NULL };

static int fail(char *err, size_t errlen, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static bool known_method(const char *m)
{
  for (size_t i = 0; methods[i]; i++)
    if (!strcmp(methods[i], m))
      return true;
  return false;
}

static bool literal_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.' || c == '~';
}

static bool name_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_';
}

/* "/", or '/'-separated segments: literals, or ':' and a name. */
static bool valid_pattern(const char *p)
{
  size_t segments = 0;

  if (!p || p[0] != '/')
    return false;
  if (!p[1])
    return true;
  while (*p == '/') {
    const char *s = ++p;
    bool param = *s == ':';

    if (param)
      s++;
    p = s;
    while (*p && *p != '/') {
      if (param ? !name_char(*p) : !literal_char(*p))
        return false;
      p++;
    }
    if (p == s || ++segments > MAX_SEGMENTS)
      return false;
  }
  return *p == '\0';
}

/* Two patterns that match the same paths: same segments, any names. */
static bool same_shape(const char *a, const char *b)
{
  while (*a && *b) {
    if (*a == ':' && *b == ':') {
      while (*a && *a != '/')
        a++;
      while (*b && *b != '/')
        b++;
      continue;
    }
    if (*a != *b)
      return false;
    a++;
    b++;
  }
  return *a == *b;
}

int chd_routes_check(const ch_route *routes, const char *mount, const char *path,
                     char *err, size_t errlen)
{
  size_t n;

  if (mount && !chd_config_mount_valid(mount))
    return fail(err, errlen, "'%s': mount '%s' is not a path such as / or /name", path, mount);
  if (!routes || !routes[0].pattern)
    return fail(err, errlen, "'%s': an application declares no routes", path);
  for (n = 0; routes[n].pattern; n++) {
    const ch_route *r = &routes[n];

    if (n >= CHD_MAX_ROUTES)
      return fail(err, errlen, "'%s': more than %d routes", path, CHD_MAX_ROUTES);
    if (!r->method || !known_method(r->method))
      return fail(err, errlen, "'%s': route %zu (%s): method '%s' is not GET, POST, PUT,"
                  " PATCH or DELETE", path, n + 1, r->pattern, r->method ? r->method : "");
    if (!valid_pattern(r->pattern))
      return fail(err, errlen, "'%s': route %s %s: the pattern is not '/' or '/'-separated"
                  " segments (A-Z a-z 0-9 - _ . ~, or :name)", path, r->method, r->pattern);
    if (!r->fn)
      return fail(err, errlen, "'%s': route %s %s has no function", path, r->method,
                  r->pattern);
    if (r->flags & ~(uintptr_t)CH_ROUTE_NO_CSRF)
      return fail(err, errlen, "'%s': route %s %s has unknown flags 0x%lx", path, r->method,
                  r->pattern, (unsigned long)r->flags);
    if (r->reserved[0] || r->reserved[1])
      return fail(err, errlen, "'%s': route %s %s sets reserved fields", path, r->method,
                  r->pattern);
    for (size_t j = 0; j < n; j++)
      if (!strcmp(routes[j].method, r->method) && same_shape(routes[j].pattern, r->pattern))
        return fail(err, errlen, "'%s': routes %s %s and %s match the same paths", path,
                    r->method, routes[j].pattern, r->pattern);
  }
  return 0;
}

const char *chd_route_under(const char *mount, const char *path)
{
  size_t n = mount ? strlen(mount) : 0;

  if (n == 1 && mount[0] == '/')
    n = 0;
  if (strncmp(path, mount ? mount : "", n) != 0)
    return NULL;
  if (path[n] == '\0')
    return "/";
  return path[n] == '/' ? path + n : NULL;
}

typedef struct seg {
  const char *p;
  size_t len;
} seg;

/* Split "/a/b" (a trailing '/' ignored) into segments. -1: too many. */
static int split(const char *path, seg *out)
{
  int n = 0;
  size_t len = strlen(path);

  if (len > 1 && path[len - 1] == '/')
    len--;
  if (len <= 1)
    return 0;
  for (size_t i = 1; i <= len; n++) {
    size_t j = i;
    if (n == MAX_SEGMENTS)
      return -1;
    while (j < len && path[j] != '/')
      j++;
    out[n].p = path + i;
    out[n].len = j - i;
    i = j + 1;
  }
  return n;
}

/* Does the pattern match? Its specificity: bit (31 - i) set for a literal
 * segment i, so a larger number is more specific. */
static bool match(const char *pattern, const seg *segs, int n, unsigned *score)
{
  seg ps[MAX_SEGMENTS];
  int pn = split(pattern, ps);

  if (pn != n)
    return false;
  *score = 0;
  for (int i = 0; i < n; i++) {
    if (segs[i].len == 0)
      return false;
    if (ps[i].p[0] == ':')
      continue;
    if (ps[i].len != segs[i].len || memcmp(ps[i].p, segs[i].p, ps[i].len) != 0)
      return false;
    *score |= 1u << (31 - i);
  }
  return true;
}

static void allow_add(char *allow, size_t size, const char *m)
{
  size_t n = strlen(allow);

  if (strstr(allow, m))
    return;
  snprintf(allow + n, size - n, "%s%s", n ? ", " : "", m);
}

chd_route_rc chd_route_find(const ch_route *routes, const char *method, const char *rel,
                            const ch_route **route, json_t **params, char *allow,
                            size_t allow_size)
{
  seg segs[MAX_SEGMENTS], ps[MAX_SEGMENTS];
  const ch_route *best = NULL;
  unsigned best_score = 0;
  bool other = false;
  int n = split(rel, segs);

  if (allow_size)
    allow[0] = '\0';
  if (n < 0)
    return CHD_ROUTE_NOT_FOUND;
  if (!strcmp(method, "HEAD"))
    method = "GET";
  for (const ch_route *r = routes; r->pattern; r++) {
    unsigned score;
    if (!match(r->pattern, segs, n, &score))
      continue;
    if (strcmp(r->method, method) != 0) {
      other = true;
      allow_add(allow, allow_size, r->method);
      if (!strcmp(r->method, "GET"))
        allow_add(allow, allow_size, "HEAD");
      continue;
    }
    if (!best || score > best_score) {
      best = r;
      best_score = score;
    }
  }
  if (!best)
    return other ? CHD_ROUTE_BAD_METHOD : CHD_ROUTE_NOT_FOUND;
  *route = best;
  *params = json_object();
  if (!*params)
    return CHD_ROUTE_NO_MEMORY;
  split(best->pattern, ps);
  for (int i = 0; i < n; i++) {
    char name[128];
    json_t *v;
    if (ps[i].p[0] != ':')
      continue;
    snprintf(name, sizeof name, "%.*s", (int)ps[i].len - 1, ps[i].p + 1);
    /* a value that is no UTF-8 text matches nothing */
    v = json_stringn(segs[i].p, segs[i].len);
    if (!v || json_object_set_new(*params, name, v) != 0) {
      json_decref(*params);
      *params = NULL;
      return v ? CHD_ROUTE_NO_MEMORY : CHD_ROUTE_NOT_FOUND;
    }
  }
  return CHD_ROUTE_FOUND;
}
