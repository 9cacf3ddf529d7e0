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

// FindCut over bytes that arrive in pieces: finds exactly the cuts FindCut finds on the whole
// file, without holding any of the bytes (the writer streams each chunk to disk as it goes).
class CutFinder {
 public:
  explicit CutFinder(const ChunkerParams& params);
  // Starts a new file (and so a new chunk).
  void Reset();
  // Takes bytes of the current chunk from data[0, n): returns how many, n unless the chunk ends
  // before; then chunk_ended() is true and the next call starts the next chunk. At the end of
  // the file, whatever the current chunk holds is its last chunk.
  size_t Consume(const uint8_t* data, size_t n);
  bool chunk_ended() const { return ended_; }

 private:
  ChunkerParams p_;
  uint64_t mask_s_ = 0, mask_l_ = 0;
  uint64_t pos_ = 0;  // bytes of the current chunk so far
  uint64_t h_ = 0;    // the gear hash, from byte `min` of the chunk on
  bool ended_ = false;
};

}  // namespace nls
