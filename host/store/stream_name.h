/*
 * stream_name.h - Message DB stream-name grammar.
 *
 * A stream name is "<category>[-<id>]". The category is everything before the
 * first '-', and may carry types after a ':' ("identity:command"). The id may
 * be compound, "<cardinal>+<more>"; consumer groups partition on the cardinal
 * id. A name with no '-' is a category. "$all" names every message of the
 * store; it is no stream of Message DB and callers treat it first.
 *
 * These functions match Message DB's SQL functions category(), id(),
 * cardinal_id() and is_category() exactly.
 */
#ifndef CHD_STREAM_NAME_H
#define CHD_STREAM_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define CHD_STREAM_ALL "$all"

/*
 * Copy the category of `stream` into buf (size bytes, NUL-terminated).
 * A NULL stream gives "" (as the book's category() does).
 * Returns 0, or -1 when buf is too small (buf then holds "").
 */
int chd_stream_category(const char *stream, char *buf, size_t size);

/* The id of `stream`: a pointer into it just past the first '-', or NULL when
 * the name has no id. */
const char *chd_stream_id(const char *stream);

/*
 * Copy the cardinal id (the id up to the first '+') into buf. A name with no
 * id gives "". Returns 0, or -1 when buf is too small.
 */
int chd_stream_cardinal_id(const char *stream, char *buf, size_t size);

/* True when `stream` has no '-' (NULL is no category). */
bool chd_stream_is_category(const char *stream);

/* True when `stream` is "$all". */
bool chd_stream_is_all(const char *stream);

/*
 * Compose "<category>-<id>" into buf. Returns 0, or -1 when buf is too small
 * or when category is empty or contains '-'.
 */
int chd_stream_name(const char *category, const char *id, char *buf, size_t size);

/*
 * Compose the command stream of an entity, "<category>:command-<id>".
 * Returns 0, or -1 as chd_stream_name().
 */
int chd_stream_command(const char *category, const char *id, char *buf, size_t size);

#endif /* CHD_STREAM_NAME_H */
