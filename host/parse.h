/*
 * parse.h - parsers of the values the host reads from files, the command
 * line and the environment.
 *
 * Each returns 0 and stores the value, or -1 (storing nothing) when the
 * whole of `s` is not one. NULL is never one.
 */
#ifndef CHD_PARSE_H
#define CHD_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A decimal whole number that fits in 64 bits, with an optional sign. */
int chd_parse_int64(const char *s, int64_t *out);

/* true/yes/on/1 or false/no/off/0, in any case. */
int chd_parse_bool(const char *s, bool *out);

/* "HOST:PORT", "[IPv6]:PORT" or "PORT" (on 127.0.0.1): the host into `host`
 * (host_size bytes with its NUL) and the port (0 to 65535). */
int chd_parse_listen(const char *s, char *host, size_t host_size, int *port);

/*
 * The address to listen on for `listen` (as chd_parse_listen; localhost is
 * 127.0.0.1), resolved numerically into *out (the caller freeaddrinfo()s
 * it); the host as used (64 bytes) and the port into `host` and *port when
 * they are not NULL. Returns 0, or -1 with a reason naming the setting
 * `key` in err.
 */
struct addrinfo;
int chd_parse_listen_addr(const char *listen, const char *key, char host[64], int *port,
                          struct addrinfo **out, char *err, size_t errlen);

#endif /* CHD_PARSE_H */
