/*
 * web_session.h - signed session cookies, CSRF tokens and password hashes.
 *
 * Session cookie value: "<user id>.<expiry>.<mac>", where expiry is a Unix
 * time in seconds and mac the base64url HMAC-SHA256, under the site's
 * secret, of "session\n<user id>\n<expiry>". A value that does not parse,
 * whose mac differs or whose expiry has passed is no session.
 *
 * CSRF token: "<nonce>.<mac>", a fresh random nonce (32 hex digits) per
 * request and the HMAC of "csrf\n<binding>\n<nonce>", where the binding is
 * "u:<user id>" for a logged-in visitor and "v:<visitor id>" (the visitor
 * cookie) otherwise. A token is valid for its binding only: another site,
 * another visitor or another user cannot forge one.
 *
 * Passwords: bcrypt through libcrypt (crypt_gensalt_rn, crypt_r).
 */
#ifndef CHD_WEB_SESSION_H
#define CHD_WEB_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHD_SESSION_COOKIE "comphost_session"
#define CHD_VISITOR_COOKIE "comphost_visitor"
#define CHD_USER_ID_MAX 64
#define CHD_SESSION_VALUE_MAX (CHD_USER_ID_MAX + 64)
#define CHD_CSRF_TOKEN_MAX 96
#define CHD_VISITOR_ID_LEN 32

/* [A-Za-z0-9_-], 1 to CHD_USER_ID_MAX characters. */
bool chd_user_id_valid(const char *s);

/* The cookie value for user_id, valid until expires. Returns 0, or -1. */
int chd_session_sign(const char *secret, const char *user_id, int64_t expires, char *out,
                     size_t size);

/* The user id of a cookie value into user_id (CHD_USER_ID_MAX + 1 bytes).
 * Returns 0, or -1 when it is no valid session at time `now`. */
int chd_session_verify(const char *secret, const char *value, int64_t now, char *user_id);

/* A new token for `binding` into out (CHD_CSRF_TOKEN_MAX bytes). 0 or -1. */
int chd_csrf_make(const char *secret, const char *binding, char *out);
bool chd_csrf_valid(const char *secret, const char *binding, const char *token);

/* `n` random bytes as 2n hex digits and a NUL. Returns 0, or -1. */
int chd_random_hex(char *out, size_t n);

/* True when s is CHD_VISITOR_ID_LEN hex digits. */
bool chd_visitor_id_valid(const char *s);

/* bcrypt, "$2b$", cost 10, into out (64 bytes). 0, or -1 with err. */
int chd_password_hash(const char *password, char out[64], char *err, size_t errlen);
/* 1 when password matches a "$2a$", "$2b$" or "$2y$" hash, 0 when not, -1
 * when hashing failed (err). */
int chd_password_verify(const char *password, const char *hash, char *err, size_t errlen);

#endif /* CHD_WEB_SESSION_H */
