/* loader.c - loading and checking plugin shared objects. */
#include "loader.h"

#include <dlfcn.h>
#include <elf.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "elf_check.h"
#include "stream_name.h"
#include "web_route.h"

#define NAME_MAX_LEN 64

static int fail(char *err, size_t errlen, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  if (err && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static bool is_empty(const char *s)
{
  return !s || !*s;
}

static bool valid_name(const char *s)
{
  size_t n = strlen(s);

  if (n == 0 || n > NAME_MAX_LEN)
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
      return false;
  return true;
}

static bool parses_as_int(const char *s)
{
  int64_t v;

  return chd_parse_int64(s, &v) == 0;
}

static bool parses_as_bool(const char *s)
{
  bool v;

  return chd_parse_bool(s, &v) == 0;
}

/* "subscription N ('id')", or "subscription N" when it has no id. */
static void subscription_label(const ch_subscription *sub, size_t n, char *buf, size_t size)
{
  if (is_empty(sub->subscriber_id))
    snprintf(buf, size, "subscription %zu", n);
  else
    snprintf(buf, size, "subscription %zu ('%s')", n, sub->subscriber_id);
}

/* Reserved slots must stay zero, so that a later ABI can give them a meaning. */
static bool reserved_zero(void *const *slots, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (slots[i])
      return false;
  return true;
}

#define RESERVED_ZERO(entry) \
  reserved_zero((entry).reserved, sizeof (entry).reserved / sizeof (entry).reserved[0])

static int check_handlers(const ch_subscription *sub, const char *path, const char *label,
                          char *err, size_t errlen)
{
  const ch_handler *h = sub->handlers;
  size_t i;

  if (!h || !h[0].type)
    return fail(err, errlen, "'%s': %s: has no handlers", path, label);
  for (i = 0; h[i].type; i++) {
    if (!*h[i].type)
      return fail(err, errlen, "'%s': %s: handler %zu has an empty type", path, label, i + 1);
    if (!h[i].fn)
      return fail(err, errlen, "'%s': %s: handler type '%s' has no function", path, label,
                  h[i].type);
    for (size_t j = 0; j < i; j++)
      if (strcmp(h[j].type, h[i].type) == 0)
        return fail(err, errlen, "'%s': %s: handler type '%s' appears twice", path, label,
                    h[i].type);
    if (!RESERVED_ZERO(h[i]))
      return fail(err, errlen, "'%s': %s: handler type '%s' sets reserved fields", path,
                  label, h[i].type);
  }
  return 0;
}

static int check_subscriptions(const ch_plugin_desc *d, const char *path, char *err,
                               size_t errlen)
{
  const ch_subscription *subs = d->subscriptions;
  char label[256];

  size_t count = 0;

  if (!subs || !subs[0].stream_name)
    return fail(err, errlen, "'%s': declares no subscriptions", path);
  while (subs[count].stream_name)
    count++;
  if (count > CH_MAX_SUBSCRIPTIONS)
    return fail(err, errlen, "'%s': declares %zu subscriptions; a plugin may have at most %d",
                path, count, CH_MAX_SUBSCRIPTIONS);
  for (size_t i = 0; subs[i].stream_name; i++) {
    const ch_subscription *s = &subs[i];

    subscription_label(s, i + 1, label, sizeof label);
    if (!*s->stream_name)
      return fail(err, errlen, "'%s': %s: stream name is empty", path, label);
    if (!chd_stream_is_all(s->stream_name) && !chd_stream_is_category(s->stream_name))
      return fail(err, errlen,
                  "'%s': %s: stream name '%s' is an entity stream, not a category or \"%s\"",
                  path, label, s->stream_name, CHD_STREAM_ALL);
    if (is_empty(s->subscriber_id))
      return fail(err, errlen, "'%s': %s: has no subscriber id", path, label);
    if (s->origin_stream_name &&
        (!*s->origin_stream_name || !chd_stream_is_category(s->origin_stream_name)))
      return fail(err, errlen, "'%s': %s: origin stream name '%s' is not a category",
                  path, label, s->origin_stream_name);
    if (!RESERVED_ZERO(*s))
      return fail(err, errlen, "'%s': %s: sets reserved fields", path, label);
    if (check_handlers(s, path, label, err, errlen) < 0)
      return -1;
    for (size_t j = 0; j < i; j++)
      if (strcmp(subs[j].subscriber_id, s->subscriber_id) == 0)
        return fail(err, errlen, "'%s': %s: subscriber id '%s' is also the id of"
                    " subscription %zu", path, label, s->subscriber_id, j + 1);
  }
  return 0;
}

static int check_config_keys(const ch_plugin_desc *d, const char *path, char *err,
                             size_t errlen)
{
  const ch_config_key *k = d->config_keys;

  if (!k)
    return 0;
  for (size_t i = 0; k[i].name; i++) {
    const char *name = k[i].name, *def = k[i].default_value;

    if (!*name)
      return fail(err, errlen, "'%s': config key %zu has an empty name", path, i + 1);
    if (!RESERVED_ZERO(k[i]))
      return fail(err, errlen, "'%s': config key '%s' sets reserved fields", path, name);
    if (chd_config_is_host_key(name))
      return fail(err, errlen, "'%s': config key '%s' is the name of a host setting",
                  path, name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(k[j].name, name) == 0)
        return fail(err, errlen, "'%s': config key '%s' appears twice", path, name);
    switch (k[i].type) {
    case CH_CONFIG_STRING:
      break;
    case CH_CONFIG_INT:
      if (def && !parses_as_int(def))
        return fail(err, errlen, "'%s': config key '%s': default '%s' is not a whole"
                    " number", path, name, def);
      break;
    case CH_CONFIG_BOOL:
      if (def && !parses_as_bool(def))
        return fail(err, errlen, "'%s': config key '%s': default '%s' is not a boolean"
                    " (true/false, yes/no, on/off, 1/0)", path, name, def);
      break;
    default:
      return fail(err, errlen, "'%s': config key '%s': type %d is not string (%d), int (%d)"
                  " or bool (%d)", path, name, (int)k[i].type, CH_CONFIG_STRING,
                  CH_CONFIG_INT, CH_CONFIG_BOOL);
    }
  }
  return 0;
}

/* secret_keys (1.1): declared string keys, each named once. */
static int check_secret_keys(const ch_plugin_desc *d, const char *path, char *err,
                             size_t errlen)
{
  const char *const *names = d->secret_keys;

  if (!names)
    return 0;
  for (size_t i = 0; names[i]; i++) {
    const ch_config_key *k = d->config_keys;
    while (k && k->name && strcmp(k->name, names[i]) != 0)
      k++;
    if (!k || !k->name)
      return fail(err, errlen, "'%s': secret key '%s' is not one of its config keys",
                  path, names[i]);
    if (k->type != CH_CONFIG_STRING)
      return fail(err, errlen, "'%s': secret key '%s' is not a string key", path, names[i]);
    for (size_t j = 0; j < i; j++)
      if (strcmp(names[j], names[i]) == 0)
        return fail(err, errlen, "'%s': secret key '%s' appears twice", path, names[i]);
  }
  return 0;
}

/* envelope_only (1.1): subscriber ids of its subscriptions, each named once. */
static int check_envelope_only(const ch_plugin_desc *d, const char *path, char *err,
                               size_t errlen)
{
  const char *const *ids = d->envelope_only;

  if (!ids)
    return 0;
  for (size_t i = 0; ids[i]; i++) {
    const ch_subscription *sub = d->subscriptions;
    while (sub && sub->stream_name && strcmp(sub->subscriber_id, ids[i]) != 0)
      sub++;
    if (!sub || !sub->stream_name)
      return fail(err, errlen, "'%s': envelope-only subscription '%s' is not one of its"
                  " subscriber ids", path, ids[i]);
    for (size_t j = 0; j < i; j++)
      if (strcmp(ids[j], ids[i]) == 0)
        return fail(err, errlen, "'%s': envelope-only subscription '%s' appears twice",
                    path, ids[i]);
  }
  return 0;
}

static int check_migrations(const ch_plugin_desc *d, const char *path, char *err,
                            size_t errlen)
{
  const ch_migration *m = d->migrations;

  if (!m)
    return 0;
  for (size_t i = 0; m[i].id; i++) {
    if (!*m[i].id)
      return fail(err, errlen, "'%s': migration %zu has an empty id", path, i + 1);
    for (size_t j = 0; j < i; j++)
      if (strcmp(m[j].id, m[i].id) == 0)
        return fail(err, errlen, "'%s': migration '%s' appears twice", path, m[i].id);
    if (!m[i].sql)
      return fail(err, errlen, "'%s': migration '%s' has no sql", path, m[i].id);
    if (!RESERVED_ZERO(m[i]))
      return fail(err, errlen, "'%s': migration '%s' sets reserved fields", path, m[i].id);
  }
  return 0;
}

static const ch_subscription no_subscriptions[1] = { { .stream_name = NULL } };

/* Everything but the fixed-width header, on the host's copy. */
static int check_desc(const ch_plugin_desc *d, const char *path, char *err, size_t errlen)
{
  if (d->kind != CH_KIND_COMPONENT && d->kind != CH_KIND_AGGREGATOR &&
      (d->kind != CH_KIND_APPLICATION || d->abi_minor < 1))
    return fail(err, errlen, "'%s': kind %u is not component (%d), aggregator (%d) or, from"
                " ABI 1.1, application (%d)", path, (unsigned)d->kind, CH_KIND_COMPONENT,
                CH_KIND_AGGREGATOR, CH_KIND_APPLICATION);
  if (d->flags != 0)
    return fail(err, errlen, "'%s': flags 0x%x are unknown to this host (ABI %u.%u)", path,
                (unsigned)d->flags, CH_ABI_MAJOR, CH_ABI_MINOR);
  if (is_empty(d->name))
    return fail(err, errlen, "'%s': the descriptor has no name", path);
  if (!valid_name(d->name))
    return fail(err, errlen, "'%s': name '%s' is not valid: use 1 to %d characters of"
                " a-z, 0-9, '_' and '-'", path, d->name, NAME_MAX_LEN);
  if (is_empty(d->version))
    return fail(err, errlen, "'%s': the descriptor has no version", path);
  if (d->kind == CH_KIND_APPLICATION) {
    if (d->subscriptions && d->subscriptions[0].stream_name)
      return fail(err, errlen, "'%s': an application has routes, not subscriptions", path);
    if (chd_routes_check(d->routes, d->mount, path, err, errlen) < 0)
      return -1;
  } else if (d->routes || d->mount) {
    return fail(err, errlen, "'%s': a %s has subscriptions, not routes", path,
                chd_kind_name(d->kind));
  } else if (check_subscriptions(d, path, err, errlen) < 0) {
    return -1;
  }
  if (check_config_keys(d, path, err, errlen) < 0 ||
      check_secret_keys(d, path, err, errlen) < 0 ||
      check_envelope_only(d, path, err, errlen) < 0 ||
      check_migrations(d, path, err, errlen) < 0)
    return -1;
  return 0;
}

/* The fixed-width header: magic, ABI and size. */
static int check_header(const ch_plugin_desc *d, const char *path, char *err, size_t errlen)
{
  uint32_t head[4];

  /* only the first fields: the rest may not exist in a foreign descriptor */
  memcpy(head, d, sizeof head);
  if (head[0] != CH_PLUGIN_MAGIC)
    return fail(err, errlen, "'%s': bad magic 0x%08x (expected 0x%08x): not a comphost"
                " plugin descriptor", path, (unsigned)head[0], (unsigned)CH_PLUGIN_MAGIC);
  if (head[1] != CH_ABI_MAJOR)
    return fail(err, errlen, "'%s': built for plugin ABI %u.%u, this host has ABI %u.%u"
                " (majors differ)", path, (unsigned)head[1], (unsigned)head[2],
                CH_ABI_MAJOR, CH_ABI_MINOR);
  if (head[2] > CH_ABI_MINOR)
    return fail(err, errlen, "'%s': built for plugin ABI %u.%u, newer than this host's"
                " ABI %u.%u: upgrade comphost", path, (unsigned)head[1], (unsigned)head[2],
                CH_ABI_MAJOR, CH_ABI_MINOR);
  if (head[3] < CH_DESC_SIZE_1_0)
    return fail(err, errlen, "'%s': descriptor is %u bytes, smaller than the %zu of"
                " ABI 1.0", path, (unsigned)head[3], (size_t)CH_DESC_SIZE_1_0);
  return 0;
}

static size_t align_up(size_t n, size_t align)
{
  return (n + align - 1) & ~(align - 1);
}

/* Look for NT_GNU_BUILD_ID in the notes of a PT_NOTE segment. */
static bool find_build_id(const unsigned char *notes, size_t len, size_t align,
                          char out[41])
{
  static const char hex[] = "0123456789abcdef";
  size_t off = 0;

  while (len - off >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr nh;
    const unsigned char *name, *desc;
    size_t name_len, desc_len;

    memcpy(&nh, notes + off, sizeof nh);
    off += sizeof nh;
    name_len = align_up(nh.n_namesz, align);
    if (name_len > len - off)
      return false;
    name = notes + off;
    off += name_len;
    if (nh.n_descsz > len - off)
      return false;
    desc = notes + off;
    desc_len = align_up(nh.n_descsz, align);
    off += desc_len < len - off ? desc_len : len - off;
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == sizeof ELF_NOTE_GNU &&
        memcmp(name, ELF_NOTE_GNU, sizeof ELF_NOTE_GNU) == 0) {
      if (nh.n_descsz == 0 || nh.n_descsz > 20)
        return false;
      for (size_t i = 0; i < nh.n_descsz; i++) {
        out[2 * i] = hex[desc[i] >> 4];
        out[2 * i + 1] = hex[desc[i] & 0xf];
      }
      out[2 * nh.n_descsz] = '\0';
      return true;
    }
  }
  return false;
}

/* The GNU build id of an ELF file, from its PT_NOTE segments; "" when it has
 * none, or is not a 64-bit ELF file of this machine's byte order. */
static void read_build_id(int fd, char out[41])
{
  Elf64_Ehdr eh;

  out[0] = '\0';
  if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
      memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != (BYTE_ORDER == LITTLE_ENDIAN ? ELFDATA2LSB : ELFDATA2MSB) ||
      eh.e_phentsize != sizeof(Elf64_Phdr))
    return;
  for (size_t i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    unsigned char *notes;
    bool found;

    if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph)
      return;
    if (ph.p_type != PT_NOTE || ph.p_filesz == 0 || ph.p_filesz > 65536)
      continue;
    notes = malloc(ph.p_filesz);
    if (!notes)
      return;
    found = pread(fd, notes, ph.p_filesz, (off_t)ph.p_offset) == (ssize_t)ph.p_filesz &&
            find_build_id(notes, ph.p_filesz, ph.p_align == 8 ? 8 : 4, out);
    free(notes);
    if (found)
      return;
  }
}

/* dlerror() texts start with the file name: drop it, the message has it. */
static const char *dl_reason(const char *dlpath)
{
  const char *e = dlerror();
  size_t n = strlen(dlpath);

  if (!e)
    return "unknown error";
  if (strncmp(e, dlpath, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
    return e + n + 2;
  return e;
}

/* What a file that is not a regular file is, for messages. */
static const char *file_kind(mode_t mode)
{
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a regular file";
}

/*
 * Open `path` for the checks before dlopen(): a regular file only, so that a
 * FIFO cannot block the host and a device is never read. stat() refuses the
 * others before open(); O_NONBLOCK keeps open() from waiting should the path
 * become a FIFO in between, and fstat() checks what was opened. Then the ELF
 * headers, so that a file cut short is refused instead of crashing dlopen()
 * with SIGBUS. Returns the descriptor with its status in *st, or -1.
 */
static int open_checked(const char *path, struct stat *st, char *err, size_t errlen)
{
  char why[512];
  int fd;

  if (stat(path, st) != 0)
    return fail(err, errlen, "'%s': cannot load: %s", path, strerror(errno));
  if (!S_ISREG(st->st_mode))
    return fail(err, errlen, "'%s': cannot load: it is %s, not a regular file", path,
                file_kind(st->st_mode));
  fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return fail(err, errlen, "'%s': cannot load: %s", path, strerror(errno));
  if (fstat(fd, st) != 0) {
    fail(err, errlen, "'%s': cannot load: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (!S_ISREG(st->st_mode)) {
    fail(err, errlen, "'%s': cannot load: it is %s, not a regular file", path,
         file_kind(st->st_mode));
    close(fd);
    return -1;
  }
  if (chd_elf_check(fd, st->st_size, why, sizeof why) != 0) {
    fail(err, errlen, "'%s': %s", path, why);
    close(fd);
    return -1;
  }
  return fd;
}

int chd_plugin_load(chd_plugin *p, const char *path, char *err, size_t errlen)
{
  char *dlpath = NULL;
  void *handle = NULL, *sym;
  ch_plugin_query_fn query;
  const ch_plugin_desc *d;
  uint32_t struct_size;
  struct stat st;
  int fd;

  memset(p, 0, sizeof *p);
  if (is_empty(path))
    return fail(err, errlen, "no plugin file given");

  fd = open_checked(path, &st, err, errlen);
  if (fd < 0)
    return -1;

  /* without a '/', dlopen() would search the library path, not the directory */
  if (!strchr(path, '/')) {
    size_t n = strlen(path) + 3;
    dlpath = malloc(n);
    if (!dlpath) {
      close(fd);
      return fail(err, errlen, "'%s': cannot load: out of memory", path);
    }
    snprintf(dlpath, n, "./%s", path);
  }
  dlerror();
  handle = dlopen(dlpath ? dlpath : path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    fail(err, errlen, "'%s': cannot load: %s", path, dl_reason(dlpath ? dlpath : path));
    free(dlpath);
    close(fd);
    return -1;
  }
  free(dlpath);

  dlerror();
  sym = dlsym(handle, CH_PLUGIN_ENTRY);
  if (!sym) {
    fail(err, errlen, "'%s': not a comphost plugin: it exports no %s", path, CH_PLUGIN_ENTRY);
    goto out;
  }
  /* POSIX guarantees the conversion; memcpy keeps ISO C quiet about it */
  memcpy(&query, &sym, sizeof query);
  d = query(&chd_host_api);
  if (!d) {
    fail(err, errlen, "'%s': %s returned no descriptor", path, CH_PLUGIN_ENTRY);
    goto out;
  }
  if (check_header(d, path, err, errlen) < 0)
    goto out;

  memcpy(&struct_size, &d->struct_size, sizeof struct_size);
  memcpy(&p->desc, d, struct_size < sizeof p->desc ? struct_size : sizeof p->desc);
  /* messages quote the plugin's strings: made before dlclose() below */
  if (check_desc(&p->desc, path, err, errlen) < 0)
    goto out;
  /* an application subscribes to nothing: an empty table, not NULL */
  if (!p->desc.subscriptions)
    p->desc.subscriptions = no_subscriptions;

  p->size = st.st_size;
  read_build_id(fd, p->build_id);

  p->path = strdup(path);
  if (!p->path) {
    fail(err, errlen, "'%s': cannot load: out of memory", path);
    goto out;
  }
  close(fd);
  p->handle = handle;
  return 0;

out:
  close(fd);
  dlclose(handle);
  memset(p, 0, sizeof *p);
  return -1;
}

void chd_plugin_unload(chd_plugin *p)
{
  if (!p)
    return;
  if (p->handle)
    dlclose(p->handle);
  free(p->path);
  memset(p, 0, sizeof *p);
}

size_t chd_plugin_subscription_count(const chd_plugin *p)
{
  size_t n = 0;

  if (!p || !p->desc.subscriptions)
    return 0;
  while (p->desc.subscriptions[n].stream_name)
    n++;
  return n;
}

bool chd_plugin_envelope_only(const chd_plugin *p, const ch_subscription *sub)
{
  for (const char *const *id = p->desc.envelope_only; id && *id; id++)
    if (strcmp(*id, sub->subscriber_id) == 0)
      return true;
  return false;
}

ch_handler_fn chd_handler_find(const ch_subscription *sub, const char *type)
{
  ch_handler_fn any = NULL;

  if (!sub || !sub->handlers)
    return NULL;
  for (const ch_handler *h = sub->handlers; h->type; h++) {
    if (type && strcmp(h->type, type) == 0)
      return h->fn;
    if (!any && strcmp(h->type, "$any") == 0)
      any = h->fn;
  }
  return any;
}

const char *chd_kind_name(uint32_t kind)
{
  switch (kind) {
  case CH_KIND_COMPONENT:
    return "component";
  case CH_KIND_AGGREGATOR:
    return "aggregator";
  case CH_KIND_APPLICATION:
    return "application";
  default:
    return "unknown";
  }
}
