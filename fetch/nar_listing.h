// NAR listings ("<hashpart>.ls", written with write-nar-listing=true):
//   {"version":1,"root":NODE}; NODE is
//   {"type":"directory","entries":{NAME:NODE,...}} |
//   {"type":"regular","size":N,"executable":bool,"narOffset":N} |
//   {"type":"symlink","target":"..."}
// A missing "executable" means false; "narOffset" is optional (offset of the contents in the
// uncompressed NAR). Unknown keys are ignored, as Nix does.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fetch/nar_sink.h"

namespace nls {

struct ListingNode {
  enum class Type { kDirectory, kRegular, kSymlink };
  Type type = Type::kDirectory;
  uint64_t size = 0;                   // regular
  bool executable = false;             // regular
  std::optional<uint64_t> nar_offset;  // regular; offset of the contents in the uncompressed NAR
  std::string target;                  // symlink
  std::map<std::string, ListingNode> entries;  // directory, sorted by byte order

  bool operator==(const ListingNode&) const = default;
};

// Parses a listing (nlohmann_json). Throws FormatError naming `origin`, the JSON path of the
// offending node and the reason: invalid JSON, version != 1, wrong types, missing fields, entry
// names that are empty, ".", "..", over 255 bytes, or contain '/' or NUL; symlink targets empty,
// over 4095 bytes or with NUL (the limits NarParser applies).
ListingNode ParseListing(std::string_view json, std::string_view origin);

// Writes the listing as Nix does: {"version":1,"root":...} with keys in Nix's order, "executable"
// only when true, "narOffset" only when known. Names that are not valid UTF-8 cannot be
// represented in JSON text: their invalid bytes are replaced by U+FFFD.
std::string ListingToJson(const ListingNode& root);

// A NarSink that builds the listing of the NAR it is fed (narOffset included), so a listing can
// be compared with, or produced instead of, a cache's .ls file.
class ListingBuilder : public NarSink {
 public:
  void CreateDirectory(std::string_view path) override;
  void BeginRegular(std::string_view path, bool executable, uint64_t size,
                    uint64_t contents_offset) override;
  void RegularData(std::string_view data) override;
  void EndRegular() override;
  void CreateSymlink(std::string_view path, std::string_view target) override;

  const ListingNode& root() const { return root_; }

 private:
  ListingNode* NodeFor(std::string_view path);
  ListingNode root_;
};

}  // namespace nls
