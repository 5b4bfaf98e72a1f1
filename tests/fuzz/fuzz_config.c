/*
 * fuzz_config.c - libFuzzer target for the INI configuration (host/config.c):
 * chd_config_load() on the input as a file, then the plugin keys of each
 * instance checked against a fixed declaration, as the host does after it
 * has loaded a plugin. No plugin is loaded (that is chd_inventory_load()).
 *
 * chd_config_load() reads a file, so the input is written to one temporary
 * file, created once and rewritten for each input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[4096];
static int fd = -1;

static const ch_config_key declared[] = {
  { .name = "table", .type = CH_CONFIG_STRING, .default_value = "pages" },
  { .name = "page_size", .type = CH_CONFIG_INT, .default_value = "25" },
  { .name = "verbose", .type = CH_CONFIG_BOOL },
  { .name = "label", .type = CH_CONFIG_STRING, .required = true },
  { .name = NULL },
};

static void remove_file(void)
{
  if (fd >= 0)
    unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *tmp = getenv("TMPDIR");

  (void)argc;
  (void)argv;
  /* the file alone decides: no overrides from the environment */
  unsetenv("MESSAGE_STORE_CONNECTION_STRING");
  unsetenv("DATABASE_URL");
  unsetenv("COMPHOST_PLUGIN_DIR");
  snprintf(path, sizeof path, "%s/comphost-fuzz-config-XXXXXX.ini",
           tmp && *tmp ? tmp : "/tmp");
  fd = mkstemps(path, 4);
  if (fd < 0) {
    perror("fuzz_config: mkstemps");
    exit(1);
  }
  atexit(remove_file);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  chd_config cfg;
  char err[1024];

  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
    abort();

  err[0] = '\0';
  if (chd_config_load(&cfg, path, NULL, err, sizeof err) != 0) {
    /* a refusal says why and leaves nothing behind */
    if (!err[0] || cfg.instances || cfg.path || cfg.message_store)
      abort();
    return 0;
  }
  if (!cfg.message_store || !cfg.plugin_dir)
    abort();
  for (size_t i = 0; i < cfg.instance_count; i++) {
    const chd_instance_config *inst = &cfg.instances[i];

    if (!inst->name || !inst->library)
      abort();
    chd_config_plugin_key(inst, "table");
    err[0] = '\0';
    if (chd_config_check_plugin_keys(&cfg, inst, declared, err, sizeof err) != 0 && !err[0])
      abort();
  }
  if (cfg.http_listen) {
    char host[256];
    int port;

    chd_parse_listen(cfg.http_listen, host, sizeof host, &port);
  }
  chd_config_release(&cfg);
  return 0;
}
