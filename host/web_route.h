/*
 * web_route.h - the route tables of applications: checking and matching.
 *
 * A site is every application instance with one `listen` address. A request
 * goes to the application with the longest mount path that is a prefix of
 * its path (on a segment boundary), then to the route of that application
 * whose pattern matches the rest: among the routes of the request's method
 * (GET for HEAD), the most specific one, where a literal segment beats a
 * parameter at the first place they differ. A path with routes of other
 * methods only is a 405; no route at all is a 404.
 */
#ifndef CHD_WEB_ROUTE_H
#define CHD_WEB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <comphost/web.h>

#define CHD_MAX_ROUTES 64

/* Check an application's route table and its descriptor mount (NULL: "/").
 * Returns 0, or -1 with "'<path>': ..." in err. */
int chd_routes_check(const ch_route *routes, const char *mount, const char *path,
                     char *err, size_t errlen);

/* The part of `path` under `mount` ("" stands for "/"): "/" for the mount
 * itself, NULL when path is not under it. Returns a pointer into path. */
const char *chd_route_under(const char *mount, const char *path);

typedef enum chd_route_rc {
  CHD_ROUTE_FOUND = 0,
  CHD_ROUTE_NOT_FOUND = 1,
  CHD_ROUTE_BAD_METHOD = 2,   /* allow lists the methods the path has */
  CHD_ROUTE_NO_MEMORY = 3
} chd_route_rc;

/*
 * Find the route for `method` and `rel` (a path under the mount, from
 * chd_route_under). On CHD_ROUTE_FOUND, *route is it and *params a new JSON
 * object of its parameters (the caller decrefs). On CHD_ROUTE_BAD_METHOD,
 * allow holds "GET, HEAD, POST" style text.
 */
chd_route_rc chd_route_find(const ch_route *routes, const char *method, const char *rel,
                            const ch_route **route, json_t **params, char *allow,
                            size_t allow_size);

#endif /* CHD_WEB_ROUTE_H */
