// Helpers shared by the cache tests: temporary directories, path trees fed through a PathWriter
// in NAR order, whole-file reads, du-style disk usage.
#pragma once

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "cache/store_cache.h"
#include "fetch/hash.h"
#include "fetch/narinfo.h"

namespace nls::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nls-cache-test.XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : throw std::runtime_error("mkdtemp failed");
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// One entry of a store path: a directory, a file or a symlink.
struct Item {
  PathMeta::Type type = PathMeta::Type::kRegular;
  bool executable = false;
  std::string data;  // contents or symlink target
};
// Relative path ("" is the root) -> item. std::map order puts parents before children.
using Tree = std::map<std::string, Item>;

inline std::string HashPartFor(uint64_t n) {
  static constexpr char kAlphabet[] = "0123456789abcdfghijklmnpqrsvwxyz";
  std::string h(32, '0');
  std::mt19937_64 rng(n * 7919 + 17);
  for (auto& c : h) c = kAlphabet[rng() % 32];
  return h;
}

inline NarInfo MakeInfo(const std::string& base_name, std::vector<std::string> refs = {}) {
  NarInfo info;
  info.store_path = StorePath::FromBaseName(base_name);
  info.url = "nar/" + std::string(info.store_path.hash_part()) + ".nar";
  info.compression = "none";
  info.nar_hash = Hash::Of(base_name);
  info.nar_size = 1234;
  for (const auto& r : refs) info.references.push_back(StorePath::FromBaseName(r));
  return info;
}

// Feeds `tree` to `w` as a NAR parser would, in pieces of at most `piece` bytes.
inline void Feed(PathWriter& w, const Tree& tree, size_t piece = 100000) {
  for (const auto& [p, item] : tree) {
    switch (item.type) {
      case PathMeta::Type::kDirectory:
        w.CreateDirectory(p);
        break;
      case PathMeta::Type::kSymlink:
        w.CreateSymlink(p, item.data);
        break;
      case PathMeta::Type::kRegular:
        w.BeginRegular(p, item.executable, item.data.size(), 0);
        for (size_t off = 0; off < item.data.size(); off += piece)
          w.RegularData(std::string_view(item.data).substr(off, piece));
        w.EndRegular();
        break;
    }
  }
}

inline std::shared_ptr<CachedPath> Add(StoreCache& cache, const NarInfo& info, const Tree& tree) {
  auto w = cache.BeginWrite(info);
  Feed(*w, tree);
  return w->Commit();
}

inline std::optional<uint32_t> NodeOf(const PathMeta& m, const std::string& rel) {
  uint32_t n = 0;
  size_t pos = 0;
  while (pos < rel.size()) {
    size_t slash = rel.find('/', pos);
    if (slash == std::string::npos) slash = rel.size();
    auto next = m.Lookup(n, std::string_view(rel).substr(pos, slash - pos));
    if (!next) return std::nullopt;
    n = *next;
    pos = slash + 1;
  }
  return n;
}

inline std::string ReadAll(StoreCache& cache, const CachedPath& cp, uint32_t node,
                           size_t buf = 65536) {
  std::string out, b(buf, '\0');
  uint64_t off = 0;
  for (;;) {
    size_t n = cache.Read(cp, node, off, b);
    if (n == 0) break;
    out.append(b.data(), n);
    off += n;
  }
  return out;
}

// Empty if `cp` holds exactly `tree`, else a description of the first difference.
inline std::string Diff(StoreCache& cache, const CachedPath& cp, const Tree& tree) {
  const PathMeta& m = *cp.meta;
  uint32_t nodes = 0;
  for (const auto& [p, item] : tree) {
    ++nodes;
    auto n = NodeOf(m, p);
    if (!n) return "missing " + p;
    const auto& node = m.node(*n);
    if (node.type != item.type) return "type of " + p;
    if (item.type == PathMeta::Type::kRegular) {
      if (node.executable != item.executable) return "executable bit of " + p;
      if (node.size != item.data.size()) return "size of " + p;
      if (ReadAll(cache, cp, *n) != item.data) return "contents of " + p;
    }
    if (item.type == PathMeta::Type::kSymlink && m.symlink_target(*n) != item.data)
      return "target of " + p;
  }
  if (nodes != m.node_count()) return "node count";
  return "";
}

inline std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t k = 0; k < 8 && i + k < n; ++k) s[i + k] = char(v >> (8 * k));
  }
  return s;
}

// du: st_blocks * 512 of everything under `dir`, directories included.
inline uint64_t DiskUsage(const std::string& dir) {
  static thread_local uint64_t total;
  total = 0;
  ::nftw(
      dir.c_str(),
      [](const char*, const struct stat* st, int, struct FTW*) {
        total += uint64_t(st->st_blocks) * 512;
        return 0;
      },
      32, FTW_PHYS);
  return total;
}

inline size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file()) ++n;
  return n;
}

}  // namespace nls::test
