/* main.c - the comphost command line. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("comphost %s\n", COMPHOST_VERSION);
    return 0;
  }
  fprintf(stderr, "usage: comphost --version\n");
  return 2;
}
