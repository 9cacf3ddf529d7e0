// A push-based, streaming NAR parser with Nix's validation rules.
//
// Feed() accepts the uncompressed NAR in pieces of any size (down to one byte); events go to the
// sink as soon as they are complete, file contents as they arrive: slices of the fed bytes are
// passed to NarSink::RegularData without copying (at most kMaxDataPiece bytes each). The parser
// keeps O(depth) state plus a small buffer for tokens split across Feed() calls, hashes every
// byte (SHA-256) and counts them. Finish() checks that the root object ended exactly at the end
// of input and, when given, NarSize and NarHash.
//
// Grammar (Nix's, strictly): nar = str("nix-archive-1") obj; obj = "(" "type" ( "regular"
// ["executable" ""] "contents" str(data) | "symlink" "target" str(t) | "directory" { "entry" "("
// "name" str(n) "node" obj ")" } ) ")". Everything else is refused with a FormatError that gives
// the byte offset of the offending token and the reason:
//   - bad magic; unexpected or unknown tag; unknown node type; tag strings over 32 bytes;
//   - `executable` with a non-empty value or after `contents`; a regular file without contents;
//   - names empty, ".", "..", containing '/' or NUL, or over 255 bytes; entries not strictly
//     ascending in unsigned byte order (duplicates included);
//   - symlink targets empty, containing NUL, or over 4095 bytes;
//   - nesting depth >= 64 (the root has depth 0, its entries depth 1, ...);
//   - non-zero padding; any byte after the root's ")".
// Sizes are u64 (files over 4 GiB are fine).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fetch/hash.h"
#include "fetch/nar_sink.h"

namespace nls {

class NarParser {
 public:
  static constexpr size_t kMaxDataPiece = 256 * 1024;  // largest RegularData piece
  static constexpr size_t kMaxTagLength = 32;
  static constexpr size_t kMaxNameLength = 255;
  static constexpr size_t kMaxTargetLength = 4095;
  static constexpr size_t kMaxDepth = 63;  // deepest allowed node; 64 is refused

  // `origin` (e.g. a store path or URL) is put in error messages; may be empty.
  explicit NarParser(NarSink& sink, std::string_view origin = {});
  ~NarParser();
  NarParser(const NarParser&) = delete;
  NarParser& operator=(const NarParser&) = delete;

  // Throws FormatError (malformed input) or whatever the sink throws. After a throw the parser
  // is unusable (further calls throw FormatError).
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
