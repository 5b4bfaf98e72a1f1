/* test_loader.c - loading and checking plugins, with the fixtures of
 * tests/fixtures (built into FIXTURE_DIR). */
#include "support.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <link.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loader.h"

#ifndef FIXTURE_DIR
#error "FIXTURE_DIR must name the directory of the fixture plugins"
#endif

static void fixture_path(const char *name, char *buf, size_t size)
{
  int n = snprintf(buf, size, "%s/%s.so", FIXTURE_DIR, name);

  assert_true(n > 0 && (size_t)n < size);
}

static bool is_loaded(const char *path)
{
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);

  if (!h)
    return false;
  dlclose(h);
  return true;
}

static void assert_zeroed(const chd_plugin *p)
{
  static const chd_plugin zero;

  assert_memory_equal(p, &zero, sizeof zero);
}

/* Load the file at `path` and expect a refusal that names the file, leaves
 * the plugin zeroed and nothing loaded. Returns the message after
 * "'PATH': ". */
static const char *refuse_path(const char *path, char *err, size_t errlen)
{
  char prefix[PATH_MAX + 8];
  struct stat st;
  chd_plugin p;

  memset(&p, 0x5a, sizeof p);
  err[0] = '\0';
  assert_int_equal(chd_plugin_load(&p, path, err, errlen), -1);

  assert_zeroed(&p);
  /* dlopen() would open a FIFO and wait for a writer */
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
    assert_false(is_loaded(path));
  snprintf(prefix, sizeof prefix, "'%s': ", path);
  if (strncmp(err, prefix, strlen(prefix)) != 0) {
    print_error("message: %s\nexpected it to start with: %s\n", err, prefix);
    fail();
  }
  return err + strlen(prefix);
}

/* Load fixture `name` (with FX_CASE = fx_case, if not NULL) and expect a
 * refusal, as refuse_path(). */
static const char *refuse(const char *name, const char *fx_case, char *err, size_t errlen)
{
  char path[PATH_MAX];
  const char *why;

  fixture_path(name, path, sizeof path);
  if (fx_case)
    assert_int_equal(setenv("FX_CASE", fx_case, 1), 0);
  why = refuse_path(path, err, errlen);
  unsetenv("FX_CASE");
  return why;
}

/* The message after "'PATH': " is exactly `want`. */
static void expect_refusal(const char *name, const char *fx_case, const char *want)
{
  char err[1024];

  assert_string_equal(refuse(name, fx_case, err, sizeof err), want);
}

/* The message after "'PATH': " has each of `want`, in order (for texts of
 * dlerror(), which vary). */
static void expect_refusal_parts(const char *name, const char *const *want)
{
  char err[1024];
  const char *at = refuse(name, NULL, err, sizeof err);

  for (; *want; want++) {
    const char *found = strstr(at, *want);
    if (!found) {
      print_error("message: %s\nmissing: %s\n", err, *want);
      fail();
    }
    at = found + strlen(*want);
  }
}

static void load_ok(chd_plugin *p, const char *name, const char *fx_case)
{
  char path[PATH_MAX], err[1024] = "";

  fixture_path(name, path, sizeof path);
  if (fx_case)
    assert_int_equal(setenv("FX_CASE", fx_case, 1), 0);
  if (chd_plugin_load(p, path, err, sizeof err) != 0) {
    print_error("cannot load %s: %s\n", path, err);
    fail();
  }
  unsetenv("FX_CASE");
}

/* The build id of a loaded object, read from its notes in memory: a check of
 * the loader's reading of the file that shares no code with it. */
struct note_search {
  uintptr_t base;
  char hex[41];
};

static int find_note(struct dl_phdr_info *info, size_t size, void *arg)
{
  struct note_search *s = arg;
  (void)size;

  if (info->dlpi_addr != s->base)
    return 0;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    const unsigned char *at, *end;
    size_t align = ph->p_align == 8 ? 8 : 4;

    if (ph->p_type != PT_NOTE)
      continue;
    at = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    end = at + ph->p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)at;
      const unsigned char *name = at + sizeof *nh;
      const unsigned char *desc = name + ((nh->n_namesz + align - 1) & ~(align - 1));

      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
          memcmp(name, "GNU", 4) == 0 && nh->n_descsz <= 20) {
        for (size_t j = 0; j < nh->n_descsz; j++)
          sprintf(s->hex + 2 * j, "%02x", desc[j]);
        return 1;
      }
      at = desc + ((nh->n_descsz + align - 1) & ~(align - 1));
    }
  }
  return 1;
}

static void test_good_plugin_loads(void **state)
{
  char path[PATH_MAX];
  const ch_plugin_desc *d;
  struct link_map *map = NULL;
  struct note_search search = { 0 };
  struct stat st;
  chd_plugin p;
  (void)state;

  load_ok(&p, "fx_good", NULL);
  fixture_path("fx_good", path, sizeof path);
  assert_string_equal(p.path, path);
  assert_non_null(p.handle);
  assert_true(is_loaded(path));

  d = &p.desc;
  assert_int_equal(d->magic, CH_PLUGIN_MAGIC);
  assert_int_equal(d->abi_major, CH_ABI_MAJOR);
  assert_int_equal(d->abi_minor, CH_ABI_MINOR);
  assert_int_equal(d->struct_size, sizeof(ch_plugin_desc));
  assert_int_equal(d->kind, CH_KIND_AGGREGATOR);
  assert_string_equal(chd_kind_name(d->kind), "aggregator");
  assert_int_equal(d->flags, 0);
  assert_string_equal(d->name, "fx_good");
  assert_string_equal(d->version, "1.2.3");
  assert_string_equal(d->description, "a valid aggregator");

  assert_string_equal(d->config_keys[0].name, "table");
  assert_int_equal(d->config_keys[0].type, CH_CONFIG_STRING);
  assert_string_equal(d->config_keys[0].default_value, "pages");
  assert_string_equal(d->config_keys[1].name, "page_size");
  assert_int_equal(d->config_keys[1].type, CH_CONFIG_INT);
  assert_string_equal(d->config_keys[1].default_value, "-25");
  assert_string_equal(d->config_keys[2].name, "verbose");
  assert_int_equal(d->config_keys[2].type, CH_CONFIG_BOOL);
  assert_string_equal(d->config_keys[2].default_value, "off");
  assert_string_equal(d->config_keys[3].name, "label");
  assert_true(d->config_keys[3].required);
  assert_null(d->config_keys[3].default_value);
  assert_null(d->config_keys[4].name);

  assert_string_equal(d->migrations[0].id, "20180303013723_create-pages");
  assert_non_null(strstr(d->migrations[0].sql, "CREATE TABLE pages"));
  assert_null(d->migrations[1].id);

  assert_non_null(d->init);
  assert_null(d->start);
  assert_null(d->stop);
  assert_non_null(d->destroy);
  assert_null(d->reset);

  assert_int_equal(chd_plugin_subscription_count(&p), 2);
  assert_string_equal(d->subscriptions[0].stream_name, "viewing");
  assert_string_equal(d->subscriptions[0].subscriber_id, "fx-good-viewing");
  assert_null(d->subscriptions[0].origin_stream_name);
  assert_string_equal(d->subscriptions[1].stream_name, "videoPublishing");
  assert_string_equal(d->subscriptions[1].subscriber_id, "fx-good-naming");
  assert_string_equal(d->subscriptions[1].origin_stream_name, "videoPublishing:command");

  assert_int_equal(stat(path, &st), 0);
  assert_true(p.size > 0);
  assert_int_equal(p.size, st.st_size);

  assert_int_equal(strlen(p.build_id), 40);
  assert_int_equal(strspn(p.build_id, "0123456789abcdef"), 40);
  assert_int_equal(dlinfo(p.handle, RTLD_DI_LINKMAP, &map), 0);
  search.base = map->l_addr;
  dl_iterate_phdr(find_note, &search);
  assert_string_equal(p.build_id, search.hex);

  chd_plugin_unload(&p);
  assert_zeroed(&p);
  assert_false(is_loaded(path));
}

static void test_handler_find(void **state)
{
  const ch_subscription *viewing, *naming;
  ch_handler_fn any, viewed, named;
  chd_plugin p;
  (void)state;

  load_ok(&p, "fx_good", NULL);
  viewing = &p.desc.subscriptions[0];
  naming = &p.desc.subscriptions[1];
  /* the tables, as fx_good.c declares them */
  assert_string_equal(viewing->handlers[0].type, "$any");
  assert_string_equal(viewing->handlers[1].type, "VideoViewed");
  assert_string_equal(naming->handlers[0].type, "VideoNamed");
  any = viewing->handlers[0].fn;
  viewed = viewing->handlers[1].fn;
  named = naming->handlers[0].fn;
  assert_true(any != viewed);

  /* its own entry wins over "$any", even after it in the table */
  assert_true(chd_handler_find(viewing, "VideoViewed") == viewed);
  assert_true(chd_handler_find(viewing, "VideoNamed") == any);
  assert_true(chd_handler_find(viewing, "videoviewed") == any);
  assert_true(chd_handler_find(viewing, "$any") == any);
  assert_true(chd_handler_find(viewing, NULL) == any);

  /* no "$any": nothing for other types */
  assert_true(chd_handler_find(naming, "VideoNamed") == named);
  assert_null(chd_handler_find(naming, "VideoViewed"));
  assert_null(chd_handler_find(naming, ""));
  assert_null(chd_handler_find(naming, NULL));

  assert_null(chd_handler_find(NULL, "VideoNamed"));
  assert_null(chd_handler_find(&(ch_subscription){ .stream_name = "x" }, "VideoNamed"));
  chd_plugin_unload(&p);
}

static void test_same_file_twice(void **state)
{
  char path[PATH_MAX];
  chd_plugin a, b;
  (void)state;

  fixture_path("fx_good", path, sizeof path);
  load_ok(&a, "fx_good", NULL);
  load_ok(&b, "fx_good", NULL);
  assert_true(a.handle == b.handle);
  assert_string_equal(a.desc.name, b.desc.name);
  assert_string_equal(a.build_id, b.build_id);
  assert_int_equal(a.size, b.size);
  assert_true(a.path != b.path);

  chd_plugin_unload(&a);
  assert_zeroed(&a);
  assert_true(is_loaded(path));
  assert_string_equal(b.desc.subscriptions[0].stream_name, "viewing");
  chd_plugin_unload(&b);
  assert_false(is_loaded(path));
}

static void test_relative_path_is_a_file_not_a_library_name(void **state)
{
  char cwd[PATH_MAX], err[1024];
  chd_plugin p;
  (void)state;

  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(FIXTURE_DIR), 0);
  assert_int_equal(chd_plugin_load(&p, "fx_good.so", err, sizeof err), 0);
  assert_string_equal(p.path, "fx_good.so");
  assert_int_equal(strlen(p.build_id), 40);
  chd_plugin_unload(&p);
  assert_int_equal(chd_plugin_load(&p, "./fx_good.so", err, sizeof err), 0);
  assert_string_equal(p.path, "./fx_good.so");
  chd_plugin_unload(&p);
  assert_int_equal(chdir(cwd), 0);
}

static void test_valid_edge_cases(void **state)
{
  chd_plugin p;
  (void)state;

  load_ok(&p, "fx_cases", "longest_name");
  assert_int_equal(strlen(p.desc.name), 64);
  assert_int_equal(p.desc.kind, CH_KIND_COMPONENT);
  assert_null(p.desc.config_keys);
  assert_null(p.desc.migrations);
  chd_plugin_unload(&p);

  load_ok(&p, "fx_cases", "all_and_typed");
  assert_int_equal(chd_plugin_subscription_count(&p), 2);
  assert_string_equal(p.desc.subscriptions[0].stream_name, "$all");
  assert_string_equal(p.desc.subscriptions[1].stream_name, "identity:command");
  chd_plugin_unload(&p);

  load_ok(&p, "fx_cases", "keys_valid");
  assert_string_equal(p.desc.config_keys[10].name, "k");
  chd_plugin_unload(&p);
}

static void test_zeroed_plugin(void **state)
{
  chd_plugin p;
  (void)state;

  memset(&p, 0, sizeof p);
  assert_int_equal(chd_plugin_subscription_count(&p), 0);
  chd_plugin_unload(&p);
  chd_plugin_unload(&p);
  chd_plugin_unload(NULL);
  assert_zeroed(&p);
}

static void test_kind_names(void **state)
{
  (void)state;
  assert_string_equal(chd_kind_name(CH_KIND_COMPONENT), "component");
  assert_string_equal(chd_kind_name(CH_KIND_AGGREGATOR), "aggregator");
  assert_string_equal(chd_kind_name(0), "unknown");
  assert_string_equal(chd_kind_name(7), "unknown");
}

/* Refusals before the descriptor */

static void test_missing_file(void **state)
{
  (void)state;
  expect_refusal_parts("fx_no_such_plugin",
                       (const char *const[]){ "cannot load: ", "No such file or directory",
                                              NULL });
}

static void test_no_path(void **state)
{
  char err[256];
  chd_plugin p;
  (void)state;

  memset(&p, 0x5a, sizeof p);
  assert_int_equal(chd_plugin_load(&p, "", err, sizeof err), -1);
  assert_string_equal(err, "no plugin file given");
  assert_zeroed(&p);
}

static void test_error_buffer_optional(void **state)
{
  char path[PATH_MAX];
  chd_plugin p;
  (void)state;

  fixture_path("fx_bad_magic", path, sizeof path);
  assert_int_equal(chd_plugin_load(&p, path, NULL, 0), -1);
  assert_zeroed(&p);
}

static void test_unresolved_symbol(void **state)
{
  (void)state;
  expect_refusal_parts("fx_unresolved_symbol",
                       (const char *const[]){ "cannot load: ", "undefined symbol",
                                              "fx_defined_nowhere", NULL });
}

static void test_missing_entry(void **state)
{
  (void)state;
  expect_refusal("fx_missing_entry", NULL,
                 "not a comphost plugin: it exports no comphost_plugin_query");
}

static void test_null_descriptor(void **state)
{
  (void)state;
  expect_refusal("fx_null_desc", NULL, "comphost_plugin_query returned no descriptor");
}

/* Refusals of the fixed-width header */

static void test_bad_magic(void **state)
{
  (void)state;
  expect_refusal("fx_bad_magic", NULL, "bad magic 0x12345678 (expected 0x43485031): "
                 "not a comphost plugin descriptor");
}

static void test_abi_major(void **state)
{
  char want[128];
  (void)state;

  snprintf(want, sizeof want, "built for plugin ABI 2.0, this host has ABI %u.%u"
           " (majors differ)", CH_ABI_MAJOR, CH_ABI_MINOR);
  expect_refusal("fx_abi_major_2", NULL, want);
}

static void test_abi_minor_newer(void **state)
{
  char want[128];
  (void)state;

  snprintf(want, sizeof want, "built for plugin ABI 1.5, newer than this host's ABI %u.%u:"
           " upgrade comphost", CH_ABI_MAJOR, CH_ABI_MINOR);
  expect_refusal("fx_abi_minor_future", NULL, want);
}

static void test_small_struct(void **state)
{
  char want[128];
  (void)state;

  snprintf(want, sizeof want, "descriptor is %zu bytes, smaller than the %zu of ABI 1.0",
           offsetof(ch_plugin_desc, init), (size_t)CH_DESC_SIZE_1_0);
  expect_refusal("fx_small_struct", NULL, want);
}

/* Refusals of the descriptor's content */

static void test_bad_kind(void **state)
{
  (void)state;
  expect_refusal("fx_bad_kind", NULL, "kind 7 is not component (1), aggregator (2) or, from ABI 1.1, application (3)");
}

static void test_bad_names(void **state)
{
  (void)state;
  expect_refusal("fx_bad_name", NULL,
                 "name 'Home Page' is not valid: use 1 to 64 characters of a-z, 0-9, '_' and '-'");
  expect_refusal("fx_cases", "long_name",
                 "name 'a1234567890123456789012345678901234567890123456789012345678901234'"
                 " is not valid: use 1 to 64 characters of a-z, 0-9, '_' and '-'");
  expect_refusal("fx_cases", "no_name", "the descriptor has no name");
  expect_refusal("fx_cases", "empty_name", "the descriptor has no name");
}

static void test_no_version(void **state)
{
  (void)state;
  expect_refusal("fx_cases", "no_version", "the descriptor has no version");
  expect_refusal("fx_cases", "empty_version", "the descriptor has no version");
}

static void test_no_subscriptions(void **state)
{
  (void)state;
  expect_refusal("fx_cases", "null_subscriptions", "declares no subscriptions");
  expect_refusal("fx_cases", "no_subscriptions", "declares no subscriptions");
}

static void test_bad_subscriptions(void **state)
{
  (void)state;
  expect_refusal("fx_bad_category", NULL,
                 "subscription 1 ('viewing'): stream name 'viewing-123' is an entity stream,"
                 " not a category or \"$all\"");
  expect_refusal("fx_dup_subscriber", NULL,
                 "subscription 3 ('views'): subscriber id 'views' is also the id of"
                 " subscription 1");
  expect_refusal("fx_cases", "no_subscriber", "subscription 1: has no subscriber id");
  expect_refusal("fx_cases", "empty_stream", "subscription 1 ('fxEmpty'): stream name is empty");
  expect_refusal("fx_cases", "bad_origin",
                 "subscription 1 ('fxOrigin'): origin stream name 'orders-42' is not a category");
}

static void test_bad_handlers(void **state)
{
  (void)state;
  expect_refusal("fx_dup_handler", NULL,
                 "subscription 2 ('viewing'): handler type 'VideoViewed' appears twice");
  expect_refusal("fx_cases", "null_handlers", "subscription 1 ('fxNull'): has no handlers");
  expect_refusal("fx_cases", "empty_handlers", "subscription 1 ('fxEmpty'): has no handlers");
  expect_refusal("fx_cases", "null_fn",
                 "subscription 1 ('fxNullFn'): handler type 'Other' has no function");
  expect_refusal("fx_cases", "empty_type",
                 "subscription 1 ('fxEmptyType'): handler 1 has an empty type");
}

/* envelope_only names subscriptions of the plugin, each once. */
static void test_envelope_only(void **state)
{
  chd_plugin p;
  (void)state;

  expect_refusal("fx_cases", "envelope_unknown",
                 "envelope-only subscription 'fxOther' is not one of its subscriber ids");
  expect_refusal("fx_cases", "envelope_twice",
                 "envelope-only subscription 'fxThings' appears twice");
  load_ok(&p, "fx_cases", "envelope_valid");
  assert_true(chd_plugin_envelope_only(&p, &p.desc.subscriptions[0]));
  chd_plugin_unload(&p);
  load_ok(&p, "fx_cases", "keys_valid");
  assert_false(chd_plugin_envelope_only(&p, &p.desc.subscriptions[0]));
  chd_plugin_unload(&p);
}

static void test_bad_config_keys(void **state)
{
  (void)state;
  expect_refusal("fx_bad_config_default", NULL,
                 "config key 'page_size': default 'ten' is not a whole number");
  expect_refusal("fx_host_key_clash", NULL,
                 "config key 'batch_size' is the name of a host setting");
  expect_refusal("fx_cases", "key_empty_name", "config key 1 has an empty name");
  expect_refusal("fx_cases", "key_twice", "config key 'table' appears twice");
  expect_refusal("fx_cases", "key_bad_type",
                 "config key 'mode': type 9 is not string (1), int (2) or bool (3)");
  expect_refusal("fx_cases", "key_bad_bool",
                 "config key 'verbose': default 'maybe' is not a boolean"
                 " (true/false, yes/no, on/off, 1/0)");
  expect_refusal("fx_cases", "key_int_overflow",
                 "config key 'limit': default '9223372036854775808' is not a whole number");
  expect_refusal("fx_cases", "key_int_trailing",
                 "config key 'limit': default '10 ' is not a whole number");
}

static void test_bad_migrations(void **state)
{
  char want[128];
  (void)state;

  expect_refusal("fx_cases", "migration_empty_id", "migration 1 has an empty id");
  expect_refusal("fx_cases", "migration_twice", "migration '001_create' appears twice");
  expect_refusal("fx_cases", "migration_no_sql", "migration '001_create' has no sql");
  snprintf(want, sizeof want, "flags 0x4 are unknown to this host (ABI %u.%u)", CH_ABI_MAJOR,
           CH_ABI_MINOR);
  expect_refusal("fx_cases", "unknown_flags", want);
  expect_refusal("fx_cases", "reserved_subscription",
                 "subscription 1 ('fxReserved'): sets reserved fields");
  expect_refusal("fx_cases", "reserved_migration", "migration '001_create' sets reserved fields");
}

/* Files that are not whole plugins: refused before dlopen(), without a
 * signal. They are made from fx_good.so in a directory of the test's own. */

static char scratch[PATH_MAX];

static int make_scratch(void **state)
{
  const char *tmp = getenv("TMPDIR");
  (void)state;

  snprintf(scratch, sizeof scratch, "%s/comphost-test-loader-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  return mkdtemp(scratch) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int remove_scratch(void **state)
{
  (void)state;
  if (scratch[0])
    nftw(scratch, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static void scratch_path(const char *name, char *buf, size_t size)
{
  int n = snprintf(buf, size, "%s/%s", scratch, name);

  assert_true(n > 0 && (size_t)n < size);
}

/* fx_good.so, whole, into memory. */
static unsigned char *good_bytes(size_t *size)
{
  char path[PATH_MAX];
  unsigned char *buf;
  struct stat st;
  FILE *f;

  fixture_path("fx_good", path, sizeof path);
  assert_int_equal(stat(path, &st), 0);
  assert_true(st.st_size > (off_t)sizeof(Elf64_Ehdr));
  *size = (size_t)st.st_size;
  buf = malloc(*size);
  assert_non_null(buf);
  f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fread(buf, 1, *size, f), *size);
  fclose(f);
  return buf;
}

/* The first `len` bytes of buf into the scratch file `name`; its path into out. */
static void write_scratch(const char *name, const void *buf, size_t len, char *out,
                          size_t outsize)
{
  FILE *f;

  scratch_path(name, out, outsize);
  f = fopen(out, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void expect_refusal_at(const char *path, const char *want)
{
  char err[1024];

  assert_string_equal(refuse_path(path, err, sizeof err), want);
}

/* The refusal starts with `head` and ends with `tail`. */
static void expect_refusal_around(const char *path, const char *head, const char *tail)
{
  char err[1024];
  const char *why = refuse_path(path, err, sizeof err);
  size_t n = strlen(why), t = strlen(tail);

  if (strncmp(why, head, strlen(head)) != 0 || n < t || strcmp(why + n - t, tail) != 0) {
    print_error("message: %s\nexpected: %s...%s\n", why, head, tail);
    fail();
  }
}

static Elf64_Ehdr header_of(const unsigned char *buf)
{
  Elf64_Ehdr eh;

  memcpy(&eh, buf, sizeof eh);
  return eh;
}

/* The index of the first PT_LOAD segment with a file part, and that segment. */
static size_t first_load(const unsigned char *buf, Elf64_Phdr *ph)
{
  Elf64_Ehdr eh = header_of(buf);

  for (size_t i = 0; i < eh.e_phnum; i++) {
    memcpy(ph, buf + eh.e_phoff + i * sizeof *ph, sizeof *ph);
    if (ph->p_type == PT_LOAD && ph->p_filesz > 0)
      return i;
  }
  fail_msg("fx_good.so has no PT_LOAD segment");
  return 0;
}

static void test_truncated_plugin(void **state)
{
  char path[PATH_MAX], want[512], tail[128];
  size_t size;
  unsigned char *buf = good_bytes(&size);
  Elf64_Ehdr eh = header_of(buf);
  (void)state;

  write_scratch("empty.so", buf, 0, path, sizeof path);
  expect_refusal_at(path, "the file is empty");

  write_scratch("cut3.so", buf, 3, path, sizeof path);
  expect_refusal_at(path, "not an ELF file: only 3 bytes");

  write_scratch("cut16.so", buf, 16, path, sizeof path);
  expect_refusal_at(path, "truncated ELF file: 16 bytes, too short for the ELF header"
                    " (64 bytes)");

  write_scratch("cut64.so", buf, 64, path, sizeof path);
  snprintf(want, sizeof want, "truncated or damaged ELF file: the program header table"
           " (offset 64, %zu bytes) ends past the end of the file (64 bytes)",
           (size_t)eh.e_phnum * sizeof(Elf64_Phdr));
  assert_int_equal(eh.e_phoff, 64);
  expect_refusal_at(path, want);

  /* where half the file ends depends on the linker: some segment is cut */
  write_scratch("half.so", buf, size / 2, path, sizeof path);
  snprintf(tail, sizeof tail, " ends past the end of the file (%zu bytes)", size / 2);
  expect_refusal_around(path, "truncated or damaged ELF file: segment ", tail);

  /* the section header table is the last thing the linker writes */
  write_scratch("short1.so", buf, size - 1, path, sizeof path);
  assert_int_equal(eh.e_shoff + (size_t)eh.e_shnum * sizeof(Elf64_Shdr), size);
  snprintf(want, sizeof want, "truncated or damaged ELF file: the section header table"
           " (offset %zu, %zu entries of 64 bytes) ends past the end of the file (%zu bytes)",
           (size_t)eh.e_shoff, (size_t)eh.e_shnum, size - 1);
  expect_refusal_at(path, want);
  free(buf);
}

static void test_damaged_elf_headers(void **state)
{
  char path[PATH_MAX], want[512], err[1024];
  size_t size, at;
  unsigned char *buf = good_bytes(&size), *bad = malloc(size);
  Elf64_Ehdr eh = header_of(buf);
  Elf64_Phdr ph;
  (void)state;

  assert_non_null(bad);
  at = first_load(buf, &ph);

  /* a PT_LOAD segment that ends past the end of the file */
  memcpy(bad, buf, size);
  ph.p_filesz = size + 1;
  memcpy(bad + eh.e_phoff + at * sizeof ph, &ph, sizeof ph);
  write_scratch("load_past_end.so", bad, size, path, sizeof path);
  snprintf(want, sizeof want, "truncated or damaged ELF file: segment %zu (PT_LOAD, offset"
           " %zu, %zu bytes) ends past the end of the file (%zu bytes)", at + 1,
           (size_t)ph.p_offset, size + 1, size);
  expect_refusal_at(path, want);

  /* an offset so large that offset + size overflows */
  ph.p_offset = UINT64_MAX - 15;
  ph.p_filesz = 32;
  memcpy(bad + eh.e_phoff + at * sizeof ph, &ph, sizeof ph);
  write_scratch("load_overflow.so", bad, size, path, sizeof path);
  snprintf(want, sizeof want, "truncated or damaged ELF file: segment %zu (PT_LOAD, offset"
           " %llu, 32 bytes) ends past the end of the file (%zu bytes)", at + 1,
           (unsigned long long)(UINT64_MAX - 15), size);
  expect_refusal_at(path, want);

  /* more bytes in the file than in memory */
  first_load(buf, &ph);
  memcpy(bad, buf, size);
  ph.p_memsz = ph.p_filesz - 1;
  memcpy(bad + eh.e_phoff + at * sizeof ph, &ph, sizeof ph);
  write_scratch("load_memsz.so", bad, size, path, sizeof path);
  snprintf(want, sizeof want, "damaged ELF file: segment %zu (PT_LOAD) has %zu bytes in the"
           " file but only %zu in memory", at + 1, (size_t)ph.p_filesz, (size_t)ph.p_memsz);
  expect_refusal_at(path, want);

  /* no PT_LOAD at all */
  memcpy(bad, buf, size);
  for (size_t i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr p;

    memcpy(&p, bad + eh.e_phoff + i * sizeof p, sizeof p);
    if (p.p_type == PT_LOAD)
      p.p_type = PT_NULL;
    memcpy(bad + eh.e_phoff + i * sizeof p, &p, sizeof p);
  }
  write_scratch("no_load.so", bad, size, path, sizeof path);
  expect_refusal_at(path, "damaged ELF file: no loadable (PT_LOAD) segment");

  /* a dynamic section that no PT_LOAD segment maps: dlopen() would read it
   * at a wild address */
  memcpy(bad, buf, size);
  want[0] = '\0';
  for (size_t i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr p;

    memcpy(&p, bad + eh.e_phoff + i * sizeof p, sizeof p);
    if (p.p_type != PT_DYNAMIC)
      continue;
    p.p_vaddr = 0x7000000000;
    memcpy(bad + eh.e_phoff + i * sizeof p, &p, sizeof p);
    snprintf(want, sizeof want, "damaged ELF file: segment %zu (PT_DYNAMIC, address"
             " 0x7000000000, %zu bytes) lies outside the loadable segments", i + 1,
             (size_t)p.p_memsz);
  }
  assert_true(want[0] != '\0');
  write_scratch("dynamic_unmapped.so", bad, size, path, sizeof path);
  expect_refusal_at(path, want);

  /* the header's fields */
#define WITH_HEADER(name, change) \
  do { \
    Elf64_Ehdr h = eh; \
    memcpy(bad, buf, size); \
    change; \
    memcpy(bad, &h, sizeof h); \
    write_scratch(name, bad, size, path, sizeof path); \
  } while (0)

  WITH_HEADER("phentsize.so", h.e_phentsize = 32);
  expect_refusal_at(path, "damaged ELF header: program header size is 32 bytes, not 56");
  WITH_HEADER("phnum0.so", h.e_phnum = 0);
  expect_refusal_at(path, "damaged ELF header: no program headers");
  WITH_HEADER("phnum_many.so", h.e_phnum = 0xffff);
  expect_refusal_at(path, "damaged ELF header: 65535 program headers (at most 1024)");
  WITH_HEADER("phoff.so", h.e_phoff = size - 8);
  snprintf(want, sizeof want, "truncated or damaged ELF file: the program header table"
           " (offset %zu, %zu bytes) ends past the end of the file (%zu bytes)", size - 8,
           (size_t)eh.e_phnum * sizeof(Elf64_Phdr), size);
  expect_refusal_at(path, want);
  WITH_HEADER("shentsize.so", h.e_shentsize = 40);
  expect_refusal_at(path, "damaged ELF header: section header size is 40 bytes, not 64");
  WITH_HEADER("shnum.so", h.e_shnum = 0xfff0);
  snprintf(want, sizeof want, "truncated or damaged ELF file: the section header table"
           " (offset %zu, 65520 entries of 64 bytes) ends past the end of the file"
           " (%zu bytes)", (size_t)eh.e_shoff, size);
  expect_refusal_at(path, want);
  WITH_HEADER("class.so", h.e_ident[EI_CLASS] = ELFCLASS32);
  expect_refusal_at(path, "ELF class is 32-bit (1), this host is 64-bit");
  WITH_HEADER("data.so", h.e_ident[EI_DATA] = ELFDATA2MSB);
  expect_refusal_at(path, "ELF byte order is big-endian (2), this host is little-endian");
  WITH_HEADER("version.so", h.e_ident[EI_VERSION] = 7);
  expect_refusal_at(path, "damaged ELF header: unknown ELF version 7");
  WITH_HEADER("machine.so", h.e_machine = 0x7eef);
  expect_refusal_around(path, "built for another machine (ELF machine 32495), this host is ",
                        ")");
  WITH_HEADER("exec.so", h.e_type = ET_EXEC);
  expect_refusal_at(path, "ELF file is an executable, not a shared object");
  WITH_HEADER("object.so", h.e_type = ET_REL);
  expect_refusal_at(path, "ELF file is a relocatable object (.o), not a shared object");
  WITH_HEADER("magic.so", h.e_ident[EI_MAG1] = 'X');
  expect_refusal_at(path, "not an ELF file: it does not start with the ELF magic number");
#undef WITH_HEADER

  write_scratch("text.so", "#!/bin/sh\necho hello\n", 21, path, sizeof path);
  assert_string_equal(refuse_path(path, err, sizeof err),
                      "not an ELF file: it does not start with the ELF magic number");
  free(bad);
  free(buf);
}

/* dlopen() does not need section headers: a file without them loads. */
static void test_no_section_headers(void **state)
{
  char path[PATH_MAX], err[1024] = "";
  size_t size;
  unsigned char *buf = good_bytes(&size);
  Elf64_Ehdr eh = header_of(buf);
  chd_plugin p;
  (void)state;

  eh.e_shoff = 0;
  eh.e_shnum = 0;
  eh.e_shstrndx = 0;
  memcpy(buf, &eh, sizeof eh);
  write_scratch("no_sections.so", buf, size, path, sizeof path);
  if (chd_plugin_load(&p, path, err, sizeof err) != 0) {
    print_error("cannot load %s: %s\n", path, err);
    fail();
  }
  assert_string_equal(p.desc.name, "fx_good");
  assert_int_equal(strlen(p.build_id), 40);
  chd_plugin_unload(&p);
  free(buf);
}

static void test_not_regular_files(void **state)
{
  char path[PATH_MAX], link[PATH_MAX];
  chd_plugin p;
  char err[1024];
  (void)state;

  /* a FIFO would block open() and read() until a writer came: never opened */
  scratch_path("fifo.so", path, sizeof path);
  assert_int_equal(mkfifo(path, 0600), 0);
  alarm(30);
  expect_refusal_at(path, "cannot load: it is a FIFO, not a regular file");
  alarm(0);

  scratch_path("dir.so", path, sizeof path);
  assert_int_equal(mkdir(path, 0700), 0);
  expect_refusal_at(path, "cannot load: it is a directory, not a regular file");

  expect_refusal_at("/dev/null", "cannot load: it is a character device, not a regular file");

  /* a symbolic link is followed: to a FIFO it is refused, to a plugin it loads */
  scratch_path("fifo.so", path, sizeof path);
  scratch_path("link-to-fifo.so", link, sizeof link);
  assert_int_equal(symlink(path, link), 0);
  expect_refusal_at(link, "cannot load: it is a FIFO, not a regular file");

  fixture_path("fx_good", path, sizeof path);
  scratch_path("link-to-good.so", link, sizeof link);
  assert_int_equal(symlink(path, link), 0);
  assert_int_equal(chd_plugin_load(&p, link, err, sizeof err), 0);
  assert_string_equal(p.desc.name, "fx_good");
  chd_plugin_unload(&p);
}

/* Run comphost with args (no program name); its exit code, and its stderr
 * into err. Fails the test when it is killed by a signal. */
static int run_comphost(const char *const *args, char *err, size_t errlen)
{
  char out_path[PATH_MAX], *argv[16];
  int status, fd, n = 0;
  ssize_t got;
  pid_t pid;

  scratch_path("comphost.err", out_path, sizeof out_path);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int e = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600),
        o = open("/dev/null", O_WRONLY | O_CLOEXEC);

    if (e < 0 || o < 0 || dup2(e, STDERR_FILENO) < 0 || dup2(o, STDOUT_FILENO) < 0)
      _exit(127);
    argv[n++] = strdup("comphost");
    for (const char *const *a = args; *a && n < 15; a++)
      argv[n++] = strdup(*a);
    argv[n] = NULL;
    alarm(60);
    execv(COMPHOST_BIN, argv);
    _exit(127);
  }
  while (waitpid(pid, &status, 0) < 0)
    assert_int_equal(errno, EINTR);
  fd = open(out_path, O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  got = read(fd, err, errlen - 1);
  close(fd);
  err[got > 0 ? got : 0] = '\0';
  if (!WIFEXITED(status)) {
    print_error("comphost %s %s: killed by signal %d\n%s\n", args[0], args[1],
                WTERMSIG(status), err);
    fail();
  }
  return WEXITSTATUS(status);
}

static void expect_cli_refusal(const char *path, const char *want)
{
  char ini[PATH_MAX], expect[2048], err[4096];
  const char *inspect[] = { "inspect", path, NULL };
  const char *check[] = { "check", "-c", ini, NULL };
  FILE *f;

  snprintf(expect, sizeof expect, "comphost: '%s': %s\n", path, want);
  assert_int_equal(run_comphost(inspect, err, sizeof err), 1);
  assert_string_equal(err, expect);

  scratch_path("broken.ini", ini, sizeof ini);
  f = fopen(ini, "w");
  assert_non_null(f);
  fprintf(f, "[host]\nmessage_store = postgresql://nobody@127.0.0.1:1/none\n\n"
          "[broken]\nlibrary = %s\n", path);
  assert_int_equal(fclose(f), 0);
  snprintf(expect, sizeof expect, "comphost: %s:5: [broken] library: '%s': %s\n", ini,
           path, want);
  assert_int_equal(run_comphost(check, err, sizeof err), 1);
  assert_string_equal(err, expect);
}

/* `comphost inspect` and `comphost check` refuse them the same way, with
 * exit code 1 and no signal. */
static void test_cli_refuses_bad_files(void **state)
{
  char path[PATH_MAX], want[512];
  size_t size;
  unsigned char *buf = good_bytes(&size);
  Elf64_Ehdr eh = header_of(buf);
  Elf64_Phdr ph;
  size_t at = first_load(buf, &ph);
  (void)state;

  write_scratch("cli16.so", buf, 16, path, sizeof path);
  expect_cli_refusal(path, "truncated ELF file: 16 bytes, too short for the ELF header"
                     " (64 bytes)");

  write_scratch("cli64.so", buf, 64, path, sizeof path);
  snprintf(want, sizeof want, "truncated or damaged ELF file: the program header table"
           " (offset 64, %zu bytes) ends past the end of the file (64 bytes)",
           (size_t)eh.e_phnum * sizeof(Elf64_Phdr));
  expect_cli_refusal(path, want);

  ph.p_filesz = size + 1;
  memcpy(buf + eh.e_phoff + at * sizeof ph, &ph, sizeof ph);
  write_scratch("cli_load.so", buf, size, path, sizeof path);
  snprintf(want, sizeof want, "truncated or damaged ELF file: segment %zu (PT_LOAD, offset"
           " %zu, %zu bytes) ends past the end of the file (%zu bytes)", at + 1,
           (size_t)ph.p_offset, size + 1, size);
  expect_cli_refusal(path, want);

  scratch_path("cli_fifo.so", path, sizeof path);
  assert_int_equal(mkfifo(path, 0600), 0);
  expect_cli_refusal(path, "cannot load: it is a FIFO, not a regular file");

  scratch_path("cli_dir.so", path, sizeof path);
  assert_int_equal(mkdir(path, 0700), 0);
  expect_cli_refusal(path, "cannot load: it is a directory, not a regular file");
  free(buf);
}

/* A truncated file whose prefix is whole up to its first segment: the one
 * that crashed dlopen() with SIGBUS, checked in this process too. */
static void test_truncated_at_many_lengths(void **state)
{
  char path[PATH_MAX], err[1024];
  size_t size;
  unsigned char *buf = good_bytes(&size);
  (void)state;

  for (size_t len = 0; len < size; len += len < 128 ? 1 : 97) {
    chd_plugin p;

    write_scratch("cut.so", buf, len, path, sizeof path);
    assert_int_equal(chd_plugin_load(&p, path, err, sizeof err), -1);
    assert_zeroed(&p);
  }
  free(buf);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_good_plugin_loads),
    cmocka_unit_test(test_handler_find),
    cmocka_unit_test(test_same_file_twice),
    cmocka_unit_test(test_relative_path_is_a_file_not_a_library_name),
    cmocka_unit_test(test_valid_edge_cases),
    cmocka_unit_test(test_zeroed_plugin),
    cmocka_unit_test(test_kind_names),
    cmocka_unit_test(test_missing_file),
    cmocka_unit_test(test_no_path),
    cmocka_unit_test(test_error_buffer_optional),
    cmocka_unit_test(test_unresolved_symbol),
    cmocka_unit_test(test_missing_entry),
    cmocka_unit_test(test_null_descriptor),
    cmocka_unit_test(test_bad_magic),
    cmocka_unit_test(test_abi_major),
    cmocka_unit_test(test_abi_minor_newer),
    cmocka_unit_test(test_small_struct),
    cmocka_unit_test(test_bad_kind),
    cmocka_unit_test(test_bad_names),
    cmocka_unit_test(test_no_version),
    cmocka_unit_test(test_no_subscriptions),
    cmocka_unit_test(test_bad_subscriptions),
    cmocka_unit_test(test_bad_handlers),
    cmocka_unit_test(test_envelope_only),
    cmocka_unit_test(test_bad_config_keys),
    cmocka_unit_test(test_bad_migrations),
    cmocka_unit_test(test_truncated_plugin),
    cmocka_unit_test(test_damaged_elf_headers),
    cmocka_unit_test(test_no_section_headers),
    cmocka_unit_test(test_not_regular_files),
    cmocka_unit_test(test_truncated_at_many_lengths),
    cmocka_unit_test(test_cli_refuses_bad_files),
  };
  return cmocka_run_group_tests(tests, make_scratch, remove_scratch);
}
