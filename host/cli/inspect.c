/* inspect.c - `comphost inspect PLUGIN`: what a plugin file declares. */
#include "inspect.h"

#include <comphost/web.h>

#include <elf.h>
#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "loader.h"

#define MAX_NEEDED 32

static const char *type_name(ch_config_type t)
{
  switch (t) {
  case CH_CONFIG_STRING: return "string";
  case CH_CONFIG_INT: return "int";
  case CH_CONFIG_BOOL: return "bool";
  default: return "unknown";
  }
}

/* "2026-11-28T06:49:19Z", or "unknown". */
static void format_mtime(const struct stat *st, char *buf, size_t size)
{
  struct tm tm;

  if (!gmtime_r(&st->st_mtime, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, size, "unknown");
}

/* The file offset of virtual address `addr`, from the PT_LOAD segments. */
static int vaddr_offset(int fd, const Elf64_Ehdr *eh, uint64_t addr, off_t *out)
{
  for (size_t i = 0; i < eh->e_phnum; i++) {
    Elf64_Phdr ph;

    if (pread(fd, &ph, sizeof ph, (off_t)(eh->e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph)
      return -1;
    if (ph.p_type == PT_LOAD && addr >= ph.p_vaddr && addr < ph.p_vaddr + ph.p_filesz) {
      *out = (off_t)(ph.p_offset + (addr - ph.p_vaddr));
      return 0;
    }
  }
  return -1;
}

/*
 * The DT_NEEDED entries of an ELF file (the libraries it asks for), into
 * names (each malloc'd). Returns how many, or -1 when the file is not a
 * 64-bit ELF of this machine's byte order or cannot be read.
 */
static int read_needed(const char *path, char **names, int max)
{
  Elf64_Ehdr eh;
  Elf64_Phdr dyn_ph = { 0 };
  uint64_t strtab = 0;
  off_t strtab_off = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC), n = 0;

  if (fd < 0)
    return -1;
  if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
      memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != (BYTE_ORDER == LITTLE_ENDIAN ? ELFDATA2LSB : ELFDATA2MSB) ||
      eh.e_phentsize != sizeof(Elf64_Phdr))
    goto fail;
  for (size_t i = 0; i < eh.e_phnum && dyn_ph.p_type != PT_DYNAMIC; i++)
    if (pread(fd, &dyn_ph, sizeof dyn_ph, (off_t)(eh.e_phoff + i * sizeof dyn_ph)) !=
        (ssize_t)sizeof dyn_ph)
      goto fail;
  if (dyn_ph.p_type != PT_DYNAMIC)
    goto fail;
  /* first the string table, then the names */
  for (int pass = 0; pass < 2; pass++) {
    for (uint64_t off = 0; off + sizeof(Elf64_Dyn) <= dyn_ph.p_filesz; off += sizeof(Elf64_Dyn)) {
      Elf64_Dyn d;
      char name[256];
      ssize_t r;

      if (pread(fd, &d, sizeof d, (off_t)(dyn_ph.p_offset + off)) != (ssize_t)sizeof d)
        goto fail;
      if (d.d_tag == DT_NULL)
        break;
      if (pass == 0 && d.d_tag == DT_STRTAB)
        strtab = d.d_un.d_ptr;
      if (pass == 1 && d.d_tag == DT_NEEDED && n < max) {
        r = pread(fd, name, sizeof name - 1, strtab_off + (off_t)d.d_un.d_val);
        if (r <= 0)
          goto fail;
        name[r] = '\0';
        if (!(names[n] = strdup(name)))
          goto fail;
        n++;
      }
    }
    if (pass == 0 && (!strtab || vaddr_offset(fd, &eh, strtab, &strtab_off) != 0))
      goto fail;
  }
  close(fd);
  return n;

fail:
  while (n > 0)
    free(names[--n]);
  close(fd);
  return -1;
}

static void print_file(const chd_plugin *p, FILE *out)
{
  char *needed[MAX_NEEDED];
  struct stat st;
  char mtime[32] = "unknown";
  int n;

  if (stat(p->path, &st) == 0)
    format_mtime(&st, mtime, sizeof mtime);
  fprintf(out, "file:         %s\n", p->path);
  fprintf(out, "size:         %lld bytes\n", (long long)p->size);
  fprintf(out, "modified:     %s\n", mtime);
  fprintf(out, "build id:     %s\n", p->build_id[0] ? p->build_id : "(none)");
  n = read_needed(p->path, needed, MAX_NEEDED);
  fprintf(out, "needs:        ");
  if (n < 0)
    fprintf(out, "(unknown)");
  for (int i = 0; i < n; i++) {
    fprintf(out, "%s%s", i ? ", " : "", needed[i]);
    free(needed[i]);
  }
  fputc('\n', out);
}

static void print_desc(const ch_plugin_desc *d, FILE *out)
{
  fprintf(out, "config keys:%s\n", d->config_keys && d->config_keys[0].name ? "" : "  (none)");
  for (const ch_config_key *k = d->config_keys; k && k->name; k++) {
    bool secret = chd_config_is_secret(d->secret_keys, k->name);

    fprintf(out, "  %s (%s", k->name, type_name(k->type));
    if (k->default_value)
      fprintf(out, ", default %s", secret ? CHD_SECRET_TEXT : k->default_value);
    if (k->required)
      fprintf(out, ", required");
    if (secret)
      fprintf(out, ", secret");
    fprintf(out, ")%s%s\n", k->help ? ": " : "", k->help ? k->help : "");
  }
  if (d->kind == CH_KIND_APPLICATION) {
    fprintf(out, "mount:        %s\n", d->mount ? d->mount : "/");
    fprintf(out, "routes:\n");
    for (const ch_route *r = d->routes; r && r->pattern; r++)
      fprintf(out, "  %-6s %s%s\n", r->method, r->pattern,
              r->flags & CH_ROUTE_NO_CSRF ? "  (no CSRF check)" : "");
  } else {
    fprintf(out, "subscriptions:\n");
  }
  for (const ch_subscription *s = d->subscriptions; s->stream_name; s++) {
    fprintf(out, "  %s: %s", s->subscriber_id, s->stream_name);
    if (s->origin_stream_name)
      fprintf(out, " (origin %s)", s->origin_stream_name);
    fprintf(out, "\n    handles: ");
    for (const ch_handler *h = s->handlers; h->type; h++)
      fprintf(out, "%s%s", h == s->handlers ? "" : ", ", h->type);
    fprintf(out, "%s\n", s->handle_batch ? " (and batches)" : "");
  }
  fprintf(out, "migrations:%s\n", d->migrations && d->migrations[0].id ? "" : "   (none)");
  for (const ch_migration *m = d->migrations; m && m->id; m++)
    fprintf(out, "  %s\n", m->id);
}

int chd_inspect(const char *plugin, const char *plugin_dir, FILE *out, char *err,
                size_t errlen)
{
  chd_plugin p;
  char *path = NULL;
  size_t len = strlen(plugin);
  const ch_plugin_desc *d;
  int rc;

  /* a bare name is looked for where `library = NAME` would find it */
  if (!strchr(plugin, '/') && !(len > 3 && !strcmp(plugin + len - 3, ".so"))) {
    const char *dir = plugin_dir && *plugin_dir ? plugin_dir : getenv("COMPHOST_PLUGIN_DIR");
    size_t n;

    if (!dir || !*dir)
      dir = COMPHOST_PLUGINDIR;
    n = strlen(dir) + len + 5;
    if (!(path = malloc(n))) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    snprintf(path, n, "%s/%s.so", dir, plugin);
  }
  rc = chd_plugin_load(&p, path ? path : plugin, err, errlen);
  free(path);
  if (rc != 0)
    return -1;
  d = &p.desc;
  fprintf(out, "plugin:       %s\n", d->name);
  fprintf(out, "version:      %s\n", d->version);
  fprintf(out, "kind:         %s\n", chd_kind_name(d->kind));
  fprintf(out, "abi:          %u.%u (this host: %u.%u)\n", (unsigned)d->abi_major,
          (unsigned)d->abi_minor, CH_ABI_MAJOR, CH_ABI_MINOR);
  if (d->description)
    fprintf(out, "description:  %s\n", d->description);
  print_file(&p, out);
  print_desc(d, out);
  chd_plugin_unload(&p);
  return 0;
}
