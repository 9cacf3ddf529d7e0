// A push-based, streaming NAR parser with Nix's validation rules.
//
// Feed() accepts the uncompressed NAR in pieces of any size (down to one byte); events go to the
// sink as soon as they are complete, file contents as they arrive. The parser keeps O(depth)
// state plus a small buffer, hashes every byte (SHA-256) and counts them. Finish() checks that
// the root object ended exactly at the end of input and, when given, NarSize and NarHash.
//
// Everything Nix refuses is refused with a FormatError that gives the byte offset and the reason:
// bad magic, unexpected tags, non-zero padding, bad/duplicate/unsorted names, bad symlink
// targets, nesting depth >= 64, over-long tag strings, trailing bytes after the root.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "fetch/hash.h"
#include "fetch/nar_sink.h"

namespace nls {

class NarParser {
 public:
  explicit NarParser(NarSink& sink);
  ~NarParser();
  NarParser(const NarParser&) = delete;
  NarParser& operator=(const NarParser&) = delete;

  // Throws FormatError (malformed input) or whatever the sink throws.
  void Feed(std::string_view bytes);

  // Call once after the last Feed(). Throws FormatError if the NAR is incomplete, IntegrityError
  // if `expected_size` / `expected_hash` are given and differ (the message has both values).
  // Returns the SHA-256 of all bytes fed.
  Hash Finish(std::optional<uint64_t> expected_size = std::nullopt,
              std::optional<Hash> expected_hash = std::nullopt);

  uint64_t bytes_consumed() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience: parses a whole NAR held in memory (tests, tools). Returns its SHA-256.
Hash ParseNar(std::string_view nar, NarSink& sink);

}  // namespace nls
