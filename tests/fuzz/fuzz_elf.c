/*
 * fuzz_elf.c - libFuzzer target for chd_elf_check() (host/elf_check.c), the
 * check of a plugin file's ELF headers before dlopen(): the input is the
 * file, in memory (memfd).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elf_check.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  fd = memfd_create("fuzz-elf", MFD_CLOEXEC);
  if (fd < 0) {
    perror("fuzz_elf: memfd_create");
    exit(1);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char err[512];
  int rc;

  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
    abort();
  err[0] = '\0';
  rc = chd_elf_check(fd, (off_t)size, err, sizeof err);
  /* 0, or -1 with a reason */
  if (rc != 0 && (rc != -1 || !err[0]))
    abort();
  /* and a file too short for the ELF header never passes */
  if (rc == 0 && size < 52)
    abort();
  return 0;
}
