// Where to cut file contents into chunks.
//
// Two strategies, both deterministic functions of the bytes only (so identical contents always
// give identical chunks, whatever store path they are in):
//   - fixed size: cut every `avg` bytes;
//   - content-defined (FastCDC, Xia et al. 2016, with normalized chunking): a rolling "gear"
//     hash over the bytes; cut where its masked bits are zero, never before `min` nor after
//     `max` bytes. An insertion in a file only moves the cuts near it, so the other chunks of
//     two versions of a file stay identical.
// The cache uses ChunkerParams::Default() (content-defined; why: docs/cache.md, measured by
// bench/cache_bench.cc). A file no larger than `min` is always one chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nls {

struct ChunkerParams {
  bool content_defined = true;
  uint32_t min = 64 * 1024;
  uint32_t avg = 256 * 1024;  // a power of two
  uint32_t max = 1024 * 1024;

  static ChunkerParams Default() { return ChunkerParams{}; }
  static ChunkerParams Fixed(uint32_t size) { return ChunkerParams{false, size, size, size}; }
  static ChunkerParams Cdc(uint32_t avg) { return ChunkerParams{true, avg / 4, avg, avg * 4}; }
  std::string ToString() const;
};

// The length of the first chunk of data[0, n): in [1, n]. Call it with n >= params.max unless
// these are the last bytes of the file (then it may return n).
size_t FindCut(const ChunkerParams& params, const uint8_t* data, size_t n);

}  // namespace nls
