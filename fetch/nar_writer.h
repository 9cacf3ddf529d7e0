// A small NAR serializer: builds NAR bytes from an in-memory tree (tests, fuzz seeds, benchmarks)
// and, through NarWriter's token methods, arbitrary (also malformed) token sequences.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace nls {

// A file system object as a NAR describes it.
struct NarTree {
  enum class Type { kDirectory, kRegular, kSymlink };
  Type type = Type::kDirectory;
  bool executable = false;                 // regular
  std::string contents;                    // regular
  std::string target;                      // symlink
  std::map<std::string, NarTree> entries;  // directory; std::map keeps Nix's byte order

  static NarTree File(std::string contents, bool executable = false);
  static NarTree Symlink(std::string target);
  static NarTree Directory(std::map<std::string, NarTree> entries = {});
};

// Appends NAR tokens to a string. Nothing is validated: this is also how tests craft bad NARs.
class NarWriter {
 public:
  // u64 little-endian.
  NarWriter& U64(uint64_t n);
  // str(s): length, bytes, zero padding to a multiple of 8.
  NarWriter& Str(std::string_view s);
  // Raw bytes, no length or padding.
  NarWriter& Raw(std::string_view s);
  // Magic "nix-archive-1".
  NarWriter& Magic() { return Str("nix-archive-1"); }
  // A whole node (canonically: directory entries in map order).
  NarWriter& Node(const NarTree& node);

  const std::string& bytes() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// The canonical NAR of `root` (what `nix-store --dump` writes for the same tree).
std::string WriteNar(const NarTree& root);

}  // namespace nls
