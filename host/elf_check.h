/*
 * elf_check.h - is a file a whole ELF shared object of this machine?
 *
 * dlopen() maps a plugin's segments and reads them in place. When the file is
 * shorter than its headers say (a copy cut short, a disk that filled up), a
 * read past its end kills the process with SIGBUS instead of failing. So the
 * loader checks the file first, with read() alone:
 *
 * - the ELF magic number, then class (32 or 64 bit), byte order, ELF
 *   version and machine equal to the host's, and the type is a shared object;
 * - the ELF header, the program header table (at most 1024 entries) and the
 *   file part of every segment (p_offset + p_filesz) lie within the file,
 *   and there is at least one PT_LOAD segment;
 * - the segments that dlopen() reads in place once the file is mapped
 *   (PT_DYNAMIC, PT_NOTE, PT_PHDR, PT_GNU_PROPERTY, PT_TLS) lie within the
 *   memory of a PT_LOAD segment;
 * - the section header table, when there is one, lies within the file.
 *
 * It reads only headers: it is no proof that the code in the file is sound.
 */
#ifndef CHD_ELF_CHECK_H
#define CHD_ELF_CHECK_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Check the open file `fd` of `size` bytes (from fstat). Returns 0 when it
 * passes, or -1 with one line in err (when err is not NULL) that says what
 * is wrong, without the file's name, e.g.
 *   "truncated or damaged ELF file: segment 3 (PT_LOAD, offset 4096, 1234
 *    bytes) ends past the end of the file (4200 bytes)"
 * The file offset of fd is not used (pread).
 */
int chd_elf_check(int fd, off_t size, char *err, size_t errlen);

#endif /* CHD_ELF_CHECK_H */
