/*
 * inspect.h - `comphost inspect PLUGIN`: what a plugin file declares.
 *
 * Loads the file as the host does (dlopen, comphost_plugin_query, the
 * descriptor's checks) and prints its name, version, ABI, kind, file (size,
 * modification time, build id), config keys, subscriptions with the types
 * they handle, and migrations. Nothing of the plugin runs beyond its entry
 * function: no init(), no database.
 */
#ifndef CHD_INSPECT_H
#define CHD_INSPECT_H

#include <stddef.h>
#include <stdio.h>

/*
 * `plugin` is a path to a .so, or a bare name ("identity"), which means
 * <plugin_dir>/<name>.so with plugin_dir the --plugin-dir value if not NULL,
 * else COMPHOST_PLUGIN_DIR, else the installed plugin directory.
 * Returns 0, or -1 with the reason in err (nothing printed).
 */
int chd_inspect(const char *plugin, const char *plugin_dir, FILE *out, char *err,
                size_t errlen);

#endif /* CHD_INSPECT_H */
