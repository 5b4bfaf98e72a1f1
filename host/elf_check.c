/* elf_check.c - is a file a whole ELF shared object of this machine? */
#include "elf_check.h"

#include <elf.h>
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The ELF flavour of the host: what a plugin must have to load here. */
#if UINTPTR_MAX > 0xffffffffu
typedef Elf64_Ehdr elf_ehdr;
typedef Elf64_Phdr elf_phdr;
typedef Elf64_Shdr elf_shdr;
#define HOST_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr elf_ehdr;
typedef Elf32_Phdr elf_phdr;
typedef Elf32_Shdr elf_shdr;
#define HOST_CLASS ELFCLASS32
#endif

#if BYTE_ORDER == LITTLE_ENDIAN
#define HOST_DATA ELFDATA2LSB
#else
#define HOST_DATA ELFDATA2MSB
#endif

/* EM_NONE: a machine this file does not know; its check is left to dlopen(). */
#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__i386__)
#define HOST_MACHINE EM_386
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#elif defined(__arm__)
#define HOST_MACHINE EM_ARM
#elif defined(__riscv)
#define HOST_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define HOST_MACHINE EM_PPC64
#elif defined(__powerpc__)
#define HOST_MACHINE EM_PPC
#elif defined(__s390__)
#define HOST_MACHINE EM_S390
#elif defined(__mips__)
#define HOST_MACHINE EM_MIPS
#else
#define HOST_MACHINE EM_NONE
#endif

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

/* Read exactly len bytes at off. Returns 0, or -1 with errno (0 when the
 * file ended first). */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
  unsigned char *p = buf;

  while (len > 0) {
    ssize_t n = pread(fd, p, len, (off_t)off);

    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = 0;
      return -1;
    }
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

static int read_failed(char *err, size_t errlen)
{
  if (errno == 0)
    return fail(err, errlen, "the file became shorter while it was being read");
  return fail(err, errlen, "cannot read the ELF headers: %s", strerror(errno));
}

/* Do `len` bytes at `off` lie within a file of `size` bytes? */
static bool within(uint64_t off, uint64_t len, uint64_t size)
{
  return off <= size && len <= size - off;
}

static const char *class_name(unsigned c)
{
  switch (c) {
  case ELFCLASS32: return "32-bit";
  case ELFCLASS64: return "64-bit";
  default: return "unknown";
  }
}

static const char *data_name(unsigned d)
{
  switch (d) {
  case ELFDATA2LSB: return "little-endian";
  case ELFDATA2MSB: return "big-endian";
  default: return "unknown";
  }
}

static const char *machine_name(unsigned m)
{
  switch (m) {
  case EM_X86_64: return "x86-64";
  case EM_386: return "i386";
  case EM_AARCH64: return "AArch64";
  case EM_ARM: return "ARM";
  case EM_RISCV: return "RISC-V";
  case EM_PPC64: return "PowerPC64";
  case EM_PPC: return "PowerPC";
  case EM_S390: return "S/390";
  case EM_MIPS: return "MIPS";
  default: return "another machine";
  }
}

static const char *type_name(unsigned t)
{
  switch (t) {
  case ET_NONE: return "of no type";
  case ET_REL: return "a relocatable object (.o)";
  case ET_EXEC: return "an executable";
  case ET_CORE: return "a core dump";
  default: return "of an unknown type";
  }
}

static const char *segment_name(uint32_t type, char *buf, size_t size)
{
  switch (type) {
  case PT_LOAD: return "PT_LOAD";
  case PT_DYNAMIC: return "PT_DYNAMIC";
  case PT_INTERP: return "PT_INTERP";
  case PT_NOTE: return "PT_NOTE";
  case PT_PHDR: return "PT_PHDR";
  case PT_TLS: return "PT_TLS";
  case PT_GNU_EH_FRAME: return "PT_GNU_EH_FRAME";
  case PT_GNU_RELRO: return "PT_GNU_RELRO";
#ifdef PT_GNU_PROPERTY
  case PT_GNU_PROPERTY: return "PT_GNU_PROPERTY";
#endif
  default:
    snprintf(buf, size, "type 0x%x", (unsigned)type);
    return buf;
  }
}

static int check_ident(const elf_ehdr *eh, char *err, size_t errlen)
{
  const unsigned char *id = eh->e_ident;

  if (id[EI_CLASS] != HOST_CLASS)
    return fail(err, errlen, "ELF class is %s (%u), this host is %s", class_name(id[EI_CLASS]),
                (unsigned)id[EI_CLASS], class_name(HOST_CLASS));
  if (id[EI_DATA] != HOST_DATA)
    return fail(err, errlen, "ELF byte order is %s (%u), this host is %s",
                data_name(id[EI_DATA]), (unsigned)id[EI_DATA], data_name(HOST_DATA));
  if (id[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
    return fail(err, errlen, "damaged ELF header: unknown ELF version %u",
                id[EI_VERSION] != EV_CURRENT ? (unsigned)id[EI_VERSION]
                                             : (unsigned)eh->e_version);
  if (HOST_MACHINE != EM_NONE && eh->e_machine != HOST_MACHINE)
    return fail(err, errlen, "built for %s (ELF machine %u), this host is %s (%u)",
                machine_name(eh->e_machine), (unsigned)eh->e_machine,
                machine_name(HOST_MACHINE), (unsigned)HOST_MACHINE);
  if (eh->e_type != ET_DYN)
    return fail(err, errlen, "ELF file is %s, not a shared object", type_name(eh->e_type));
  return 0;
}

/* More than any shared object has (they have about ten): it bounds the
 * work of the checks below. */
#define MAX_PHNUM 1024

/* The memory that dlopen() reads through a segment's address as soon as it
 * maps the file: the dynamic section, notes, the program headers and the
 * TLS initialisation image. 0 for the others. */
static uint64_t read_in_place(const elf_phdr *ph)
{
  switch (ph->p_type) {
  case PT_DYNAMIC:
  case PT_NOTE:
  case PT_PHDR:
#ifdef PT_GNU_PROPERTY
  case PT_GNU_PROPERTY:
#endif
    return ph->p_memsz > 0 ? ph->p_memsz : 1;
  case PT_TLS:
    return ph->p_filesz;
  default:
    return 0;
  }
}

/* Is [vaddr, vaddr + len) within the memory of one PT_LOAD segment? */
static bool mapped(const elf_phdr *phs, size_t n, uint64_t vaddr, uint64_t len)
{
  for (size_t i = 0; i < n; i++)
    if (phs[i].p_type == PT_LOAD && vaddr >= phs[i].p_vaddr &&
        vaddr - phs[i].p_vaddr <= phs[i].p_memsz &&
        len <= phs[i].p_memsz - (vaddr - phs[i].p_vaddr))
      return true;
  return false;
}

static int check_segment_list(const elf_phdr *phs, size_t n, uint64_t size, char *err,
                              size_t errlen)
{
  size_t loads = 0;
  char buf[32];

  for (size_t i = 0; i < n; i++) {
    const elf_phdr *ph = &phs[i];

    if (!within(ph->p_offset, ph->p_filesz, size))
      return fail(err, errlen, "truncated or damaged ELF file: segment %zu (%s, offset %llu,"
                  " %llu bytes) ends past the end of the file (%llu bytes)", i + 1,
                  segment_name(ph->p_type, buf, sizeof buf), (unsigned long long)ph->p_offset,
                  (unsigned long long)ph->p_filesz, (unsigned long long)size);
    if (ph->p_type != PT_LOAD)
      continue;
    if (ph->p_filesz > ph->p_memsz)
      return fail(err, errlen, "damaged ELF file: segment %zu (PT_LOAD) has %llu bytes in the"
                  " file but only %llu in memory", i + 1, (unsigned long long)ph->p_filesz,
                  (unsigned long long)ph->p_memsz);
    loads++;
  }
  if (loads == 0)
    return fail(err, errlen, "damaged ELF file: no loadable (PT_LOAD) segment");
  for (size_t i = 0; i < n; i++) {
    uint64_t len = read_in_place(&phs[i]);

    if (len > 0 && !mapped(phs, n, phs[i].p_vaddr, len))
      return fail(err, errlen, "damaged ELF file: segment %zu (%s, address 0x%llx, %llu"
                  " bytes) lies outside the loadable segments", i + 1,
                  segment_name(phs[i].p_type, buf, sizeof buf),
                  (unsigned long long)phs[i].p_vaddr, (unsigned long long)len);
  }
  return 0;
}

static int check_segments(int fd, const elf_ehdr *eh, uint64_t size, char *err,
                          size_t errlen)
{
  uint64_t table = (uint64_t)eh->e_phnum * sizeof(elf_phdr);
  elf_phdr *phs;
  int rc;

  if (eh->e_phentsize != sizeof(elf_phdr))
    return fail(err, errlen, "damaged ELF header: program header size is %u bytes, not %zu",
                (unsigned)eh->e_phentsize, sizeof(elf_phdr));
  if (eh->e_phnum == 0)
    return fail(err, errlen, "damaged ELF header: no program headers");
  if (eh->e_phnum > MAX_PHNUM)
    return fail(err, errlen, "damaged ELF header: %u program headers (at most %d)",
                (unsigned)eh->e_phnum, MAX_PHNUM);
  if (!within(eh->e_phoff, table, size))
    return fail(err, errlen, "truncated or damaged ELF file: the program header table"
                " (offset %llu, %llu bytes) ends past the end of the file (%llu bytes)",
                (unsigned long long)eh->e_phoff, (unsigned long long)table,
                (unsigned long long)size);

  phs = malloc((size_t)table);
  if (!phs)
    return fail(err, errlen, "out of memory");
  if (read_at(fd, phs, (size_t)table, eh->e_phoff) != 0)
    rc = read_failed(err, errlen);
  else
    rc = check_segment_list(phs, eh->e_phnum, size, err, errlen);
  free(phs);
  return rc;
}

/* No section header table (e_shoff 0) is fine: dlopen() needs none. */
static int check_sections(int fd, const elf_ehdr *eh, uint64_t size, char *err,
                          size_t errlen)
{
  uint64_t count = eh->e_shnum;

  if (eh->e_shoff == 0)
    return 0;
  if (eh->e_shentsize != sizeof(elf_shdr))
    return fail(err, errlen, "damaged ELF header: section header size is %u bytes, not %zu",
                (unsigned)eh->e_shentsize, sizeof(elf_shdr));
  if (count == 0) {
    /* 0 or more than SHN_LORESERVE sections: the count is section 0's size */
    elf_shdr first;

    if (!within(eh->e_shoff, sizeof first, size))
      return fail(err, errlen, "truncated or damaged ELF file: the section header table"
                  " (offset %llu) starts past the end of the file (%llu bytes)",
                  (unsigned long long)eh->e_shoff, (unsigned long long)size);
    if (read_at(fd, &first, sizeof first, eh->e_shoff) != 0)
      return read_failed(err, errlen);
    count = first.sh_size ? first.sh_size : 1;
  }
  if (count > size / sizeof(elf_shdr) ||
      !within(eh->e_shoff, count * sizeof(elf_shdr), size))
    return fail(err, errlen, "truncated or damaged ELF file: the section header table"
                " (offset %llu, %llu entries of %zu bytes) ends past the end of the file"
                " (%llu bytes)", (unsigned long long)eh->e_shoff, (unsigned long long)count,
                sizeof(elf_shdr), (unsigned long long)size);
  return 0;
}

int chd_elf_check(int fd, off_t size, char *err, size_t errlen)
{
  elf_ehdr eh;
  uint64_t usize;

  if (size < 0)
    return fail(err, errlen, "the file has a negative size");
  usize = (uint64_t)size;
  if (usize == 0)
    return fail(err, errlen, "the file is empty");
  if (usize < SELFMAG)
    return fail(err, errlen, "not an ELF file: only %llu bytes", (unsigned long long)usize);
  if (read_at(fd, &eh, SELFMAG, 0) != 0)
    return read_failed(err, errlen);
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    return fail(err, errlen, "not an ELF file: it does not start with the ELF magic number");
  if (usize < sizeof eh)
    return fail(err, errlen, "truncated ELF file: %llu bytes, too short for the ELF header"
                " (%zu bytes)", (unsigned long long)usize, sizeof eh);
  if (read_at(fd, &eh, sizeof eh, 0) != 0)
    return read_failed(err, errlen);
  if (check_ident(&eh, err, errlen) != 0 ||
      check_segments(fd, &eh, usize, err, errlen) != 0 ||
      check_sections(fd, &eh, usize, err, errlen) != 0)
    return -1;
  return 0;
}
