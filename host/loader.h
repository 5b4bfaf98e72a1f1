/*
 * loader.h - loading and checking plugin shared objects.
 *
 * chd_plugin_load() first checks the file without running any of it: a
 * regular file (not a FIFO, directory or device), and a whole ELF shared
 * object of the host's class, byte order and machine (elf_check.h), so that
 * a file cut short is refused instead of killing the process with SIGBUS in
 * dlopen(). A file rewritten in place while it is being loaded can still do
 * that: install plugins by rename. Then it
 * dlopen()s the file with RTLD_NOW | RTLD_LOCAL, finds
 * comphost_plugin_query, calls it with the host's function table and checks
 * the descriptor before anything of the plugin runs beyond that entry:
 * magic, ABI major and minor, struct size, kind, name, subscriptions (each
 * with a category or "$all", a subscriber id, handlers with unique types),
 * config keys, secret keys, envelope-only subscriptions and migrations. It
 * copies the descriptor into host memory, so fields of a newer minor that the
 * plugin does not have read as zero.
 */
#ifndef CHD_LOADER_H
#define CHD_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <comphost/plugin.h>

typedef struct chd_plugin {
  char *path;                 /* as loaded */
  void *handle;               /* dlopen handle */
  ch_plugin_desc desc;        /* host copy; pointers point into the plugin */
  off_t size;                 /* file size in bytes */
  char build_id[41];          /* GNU build id in hex, "" when the file has none */
} chd_plugin;

/* The function table the host gives plugins (host_api.c). */
extern const ch_host_api chd_host_api;

/*
 * Load and check the plugin at `path`. Returns 0, or -1 with a message in
 * err that names the file and, for an ABI mismatch, both versions, e.g.
 *   "'plugins/x.so': built for plugin ABI 2.0, this host has ABI 1.0 (majors differ)"
 * On failure *p is zeroed.
 * Nothing stays loaded on failure.
 */
int chd_plugin_load(chd_plugin *p, const char *path, char *err, size_t errlen);

/* dlclose and free. A zeroed plugin is allowed. */
void chd_plugin_unload(chd_plugin *p);

/* Count the entries of the descriptor's tables. */
size_t chd_plugin_subscription_count(const chd_plugin *p);

/* Is `sub`, a subscription of p, envelope-only (ch_plugin_desc.envelope_only)? */
bool chd_plugin_envelope_only(const chd_plugin *p, const ch_subscription *sub);

/* The handler for `type` in a subscription's table: its own entry, else the
 * "$any" entry, else NULL. */
ch_handler_fn chd_handler_find(const ch_subscription *sub, const char *type);

/* "component" or "aggregator". */
const char *chd_kind_name(uint32_t kind);

#endif /* CHD_LOADER_H */
