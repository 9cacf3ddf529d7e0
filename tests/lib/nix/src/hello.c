/* hello: the fixture program. Loaded by ${glibc}/lib/ld-linux-x86-64.so.2 with an RPATH into the
 * glibc, zlib and greet store paths, so running it reads files from four store paths.
 *   hello            prints a fixed greeting (includes the zlib version and a crc32)
 *   hello FILE...    prints "<size> <crc32 hex> <FILE>" for each file (reads it completely)
 * Exit status 1 when a file cannot be read. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "greet.h"

/* From zlib (declared here so that building needs only the runtime library, not zlib1g-dev). */
unsigned long crc32(unsigned long crc, const unsigned char* buf, unsigned int len);
const char* zlibVersion(void);

static int checksum(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 1;
  }
  static unsigned char buf[1 << 16];
  unsigned long crc = crc32(0L, NULL, 0), size = 0;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    crc = crc32(crc, buf, (unsigned)n);
    size += n;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    perror(path);
    return 1;
  }
  printf("%lu %08lx %s\n", size, crc, path);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1) {
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= checksum(argv[i]);
    return rc;
  }
  const char* msg = "Hello, world!";
  printf(
      "Hello from nix-lazy-store! %s; zlib %s; crc32(\"%s\")=%08lx; sqrt(2)=%.6f; cbrt(27)=%.1f\n",
      greet_message(), zlibVersion(), msg,
      crc32(crc32(0L, NULL, 0), (const unsigned char*)msg, (unsigned)strlen(msg)), greet_root(2.0),
      cbrt(27.0));
  return 0;
}
