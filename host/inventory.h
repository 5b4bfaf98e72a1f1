/*
 * inventory.h - a host's configuration with its plugins loaded and checked.
 *
 * chd_inventory_load() does everything that can be checked before anything
 * runs: it parses the INI, loads every instance's plugin, checks each
 * instance's settings against the keys its plugin declares, and refuses
 * two libraries with one plugin name, a subscriber id used twice, and
 * settings that need a view database when none is configured. `comphost
 * check` stops there and prints the inventory; the daemon goes on to start.
 */
#ifndef CHD_INVENTORY_H
#define CHD_INVENTORY_H

#include <stdio.h>

#include "config.h"
#include "loader.h"

typedef struct chd_inventory {
  chd_config cfg;
  chd_plugin *plugins;       /* one per instance, same order as cfg.instances */
  size_t count;
} chd_inventory;

/* Returns 0, or -1 with the reason in err. On error *inv is released. */
int chd_inventory_load(chd_inventory *inv, const char *config_path,
                       const char *plugin_dir_override, char *err, size_t errlen);

void chd_inventory_release(chd_inventory *inv);

/* Log one line per plugin and per subscription: what runs. */
void chd_inventory_log(const chd_inventory *inv);

/*
 * Print the inventory for `comphost check`: plugins, versions, files,
 * subscriptions, handled types and position stores; with `with_positions`,
 * connect and add each subscription's position and whether it is stopped.
 * Returns 0, or -1 when positions were asked for and could not be read.
 */
int chd_inventory_print(const chd_inventory *inv, FILE *out, int with_positions);

#endif /* CHD_INVENTORY_H */
