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
  std::string url;                    // relative to the cache root, or absolute
  std::string compression = "bzip2";  // "none", "xz", "zstd", "bzip2", "br", ... (missing: bzip2)
  std::optional<Hash> file_hash;
  std::optional<uint64_t> file_size;
  Hash nar_hash;
  uint64_t nar_size = 0;              // > 0
  std::vector<StorePath> references;  // base names, in file order
  std::optional<StorePath> deriver;   // absent or "unknown-deriver" -> nullopt
  std::vector<std::string> sigs;      // "<keyname>:<base64>", in file order
  std::optional<std::string> ca;

  // Parses narinfo text. `expected_hash_part`, when given, must equal the StorePath's hash part.
  // `origin` (e.g. "https://cache/abc.narinfo") is used in error messages, which also name the
  // line number and the reason. Throws FormatError.
  //
  // Rules: every line is "Key: value\n" (a bare "Key:\n" is an empty value); unknown keys are
  // ignored; StorePath is a full path under `store_dir`; References and Deriver are base names;
  // hashes take every form Hash::Parse accepts; sizes are plain decimal u64. Required: StorePath,
  // URL (non-empty), NarHash, NarSize (> 0). Stricter than Nix: a repeated single-valued key
  // (anything but Sig) is an error, where Nix lets the last one win; CA is only checked to start
  // with "text:" or "fixed:". Never does I/O.
  static NarInfo Parse(std::string_view text, std::string_view origin,
                       std::optional<std::string_view> expected_hash_part = std::nullopt,
                       std::string_view store_dir = kDefaultStoreDir);

  // Writes the narinfo in Nix's field order, byte-identical to what Nix writes for the same
  // fields (FileHash/FileSize omitted when absent); Parse(ToString()) round-trips. Throws
  // FormatError for values that cannot be written (a newline in a value, empty URL, NarSize 0).
  std::string ToString(std::string_view store_dir = kDefaultStoreDir) const;

  // "1;<full path>;sha256:<nix32>;<NarSize>;<comma-joined sorted full reference paths>"
  // (references de-duplicated, as Nix keeps them in a set). What Sig lines sign.
  std::string Fingerprint(std::string_view store_dir = kDefaultStoreDir) const;

  bool operator==(const NarInfo&) const = default;
};

}  // namespace nls
