/*
 * uuid.h - UUIDs for message ids (libuuid).
 *
 * Every function writes the canonical lower-case text form, 36 characters and
 * a NUL, into a caller buffer of CHD_UUID_LEN bytes.
 */
#ifndef CHD_UUID_H
#define CHD_UUID_H

#include <stdbool.h>

#define CHD_UUID_LEN 37

/* A random (version 4) UUID. */
void chd_uuid_v4(char out[CHD_UUID_LEN]);

/*
 * A name-based (version 5, SHA-1) UUID of `name` in the namespace `ns`, a UUID
 * in text form. The same inputs always give the same UUID.
 * Returns 0, or -1 when ns is not a valid UUID.
 */
int chd_uuid_v5(const char *ns, const char *name, char out[CHD_UUID_LEN]);

/* True when `text` is a UUID in text form (any case). */
bool chd_uuid_valid(const char *text);

#endif /* CHD_UUID_H */
