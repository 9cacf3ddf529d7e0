// The narinfo format ("<hashpart>.narinfo"): Key: value lines describing one store path in a
// binary cache. Semantics follow Nix's nar-info.cc (see docs/formats.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetch/hash.h"
#include "fetch/store_path.h"

namespace nls {

struct NarInfo {
  StorePath store_path = StorePath::FromBaseName("00000000000000000000000000000000-x");
  std::string url;                       // relative to the cache root, or absolute
  std::string compression = "bzip2";    // "none", "xz", "zstd", "bzip2", "br", ... (missing: bzip2)
  std::optional<Hash> file_hash;
  std::optional<uint64_t> file_size;
  Hash nar_hash;
  uint64_t nar_size = 0;                 // > 0
  std::vector<StorePath> references;     // base names, in file order
  std::optional<StorePath> deriver;      // absent or "unknown-deriver" -> nullopt
  std::vector<std::string> sigs;         // "<keyname>:<base64>", in file order
  std::optional<std::string> ca;

  // Parses narinfo text. `expected_hash_part`, when given, must equal the StorePath's hash part.
  // `origin` (e.g. "https://cache/abc.narinfo") is used in error messages, which also name the
  // line number and the reason. Throws FormatError.
  static NarInfo Parse(std::string_view text, std::string_view origin,
                       std::optional<std::string_view> expected_hash_part = std::nullopt,
                       std::string_view store_dir = kDefaultStoreDir);

  // Writes the narinfo in Nix's field order; Parse(ToString()) round-trips.
  std::string ToString(std::string_view store_dir = kDefaultStoreDir) const;

  // "1;<full path>;sha256:<nix32>;<NarSize>;<comma-joined sorted full reference paths>"
  std::string Fingerprint(std::string_view store_dir = kDefaultStoreDir) const;

  bool operator==(const NarInfo&) const = default;
};

}  // namespace nls
