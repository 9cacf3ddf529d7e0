// Benchmarks of the chunk cache (driven by bench/cache_bench.py; figures in docs/benchmarks.md).
//
//   cache_bench dedup A B         chunking strategies on two versions of a toolchain: bytes of B
//                                 already stored by A, overall dedup ratio, chunk+hash CPU cost
//   cache_bench dedup-edit A      the same with B = A plus a 100-byte insertion in every file
//   cache_bench read SRC WORKDIR [runs]
//                                 imports SRC (a directory) into a cache in WORKDIR, then reads
//                                 every file through StoreCache::Read and from a fresh copy of
//                                 SRC in WORKDIR (same file system) with the same 128 KiB
//                                 requests, interleaved; warm
//                                 page cache; reports the medians and the median ratio
//   cache_bench meta WORKDIR [files]
//                                 PathMeta::Load time (file read included) of a 50 000-file path
//   cache_bench open WORKDIR [paths]
//                                 StoreCache::Open (start-up) time of a cache of `paths` store
//                                 paths of 1024 chunks each (four 1 MiB files, 4 KiB chunks):
//                                 median of 5 with a warm page cache, and once after dropping
//                                 it (when /proc/sys/vm/drop_caches is writable: root)
// Every result is one JSON line on stdout.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/chunker.h"
#include "cache/path_meta.h"
#include "cache/store_cache.h"
#include "fetch/error.h"
#include "fetch/hash.h"

namespace fs = std::filesystem;
using nls::ChunkerParams;
using nls::ChunkId;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string ReadFile(const std::string& path) {
  std::string data;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw nls::Error("cannot open " + path);
  struct stat st;
  ::fstat(fd, &st);
  data.resize(size_t(st.st_size));
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd, data.data() + got, data.size() - got, off_t(got));
    if (n <= 0) break;
    got += size_t(n);
  }
  data.resize(got);
  ::close(fd);
  return data;
}

// Regular files under `root` (or `root` itself), symlinks followed, sorted.
std::vector<std::string> FilesUnder(const std::string& root) {
  std::vector<std::string> out;
  if (fs::is_regular_file(root)) return {root};
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root,
                                                  fs::directory_options::follow_directory_symlink |
                                                      fs::directory_options::skip_permission_denied,
                                                  ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------------------------

struct Strategy {
  ChunkerParams params;
  std::unordered_map<ChunkId, uint32_t, nls::ChunkIdHash> a_chunks;
  uint64_t a_bytes = 0, b_bytes = 0, b_new = 0, b_unique = 0, chunks = 0, small_files = 0;
  std::set<ChunkId> b_seen;
  double cpu_seconds = 0;
  uint64_t cpu_bytes = 0;
};

void Chunk(Strategy& s, const std::string& data, bool is_a) {
  auto start = Clock::now();
  size_t pos = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  while (pos < data.size()) {
    size_t n = nls::FindCut(s.params, p + pos, data.size() - pos);
    ChunkId id = ChunkId::Of(std::string_view(data.data() + pos, n));
    ++s.chunks;
    if (is_a) {
      s.a_chunks.emplace(id, uint32_t(n));
    } else if (s.b_seen.insert(id).second) {
      s.b_unique += n;
      if (!s.a_chunks.count(id)) s.b_new += n;
    }
    pos += n;
  }
  s.cpu_seconds += Seconds(start, Clock::now());
  s.cpu_bytes += data.size();
  (is_a ? s.a_bytes : s.b_bytes) += data.size();
}

// `b` empty: B is A with a synthetic edit in every file (100 bytes inserted at a pseudo-random
// offset), the kind of change (a longer version string, a patch) fixed-size chunks cannot absorb.
int Dedup(const std::string& a, const std::string& b) {
  std::vector<Strategy> strategies;
  for (uint32_t k : {64u, 256u, 1024u}) {
    strategies.emplace_back().params = ChunkerParams::Fixed(k * 1024);
    strategies.emplace_back().params = ChunkerParams::Cdc(k * 1024);
  }
  std::mt19937_64 rng(3);
  for (int side = 0; side < 2; ++side) {
    for (const auto& f : FilesUnder(side == 0 || b.empty() ? a : b)) {
      std::string data = ReadFile(f);
      if (side == 1 && b.empty() && !data.empty())
        data.insert(rng() % data.size(), std::string(100, char(rng())));
      for (auto& s : strategies) Chunk(s, data, side == 0);
    }
  }
  for (auto& s : strategies) {
    uint64_t a_unique = 0;
    for (const auto& [id, n] : s.a_chunks) a_unique += n;
    uint64_t unique = a_unique + s.b_new;
    std::printf(
        "{\"bench\":\"dedup\",\"strategy\":\"%s\",\"a\":\"%s\",\"b\":\"%s\",\"a_bytes\":%llu,"
        "\"b_bytes\":%llu,\"b_shared_with_a\":%.4f,\"dedup_ratio\":%.4f,\"avg_chunk\":%.0f,"
        "\"chunk_hash_MBps\":%.0f}\n",
        s.params.ToString().c_str(), a.c_str(), b.empty() ? "A+edit" : b.c_str(),
        (unsigned long long)s.a_bytes, (unsigned long long)s.b_bytes,
        1.0 - double(s.b_new) / double(s.b_bytes), double(s.a_bytes + s.b_bytes) / double(unique),
        double(s.a_bytes + s.b_bytes) / double(s.chunks), s.cpu_bytes / s.cpu_seconds / 1e6);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

// Feeds directory `root` to `w` in NAR order (symlinks kept as symlinks).
void FeedTree(nls::PathWriter& w, const fs::path& root, const std::string& rel) {
  fs::path p = rel.empty() ? root : root / rel;
  auto st = fs::symlink_status(p);
  if (fs::is_symlink(st)) {
    w.CreateSymlink(rel, fs::read_symlink(p).string());
  } else if (fs::is_directory(st)) {
    w.CreateDirectory(rel);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(p)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    for (const auto& n : names) FeedTree(w, root, rel.empty() ? n : rel + "/" + n);
  } else if (fs::is_regular_file(st)) {
    std::string data = ReadFile(p.string());
    bool exec = (fs::status(p).permissions() & fs::perms::owner_exec) != fs::perms::none;
    w.BeginRegular(rel, exec, data.size(), 0);
    for (size_t off = 0; off < data.size(); off += 256 * 1024)
      w.RegularData(std::string_view(data).substr(off, 256 * 1024));
    w.EndRegular();
  }
}

// The narinfo of bench store path #n: "<n as a Nix32 hash part>-<name>".
nls::NarInfo BenchInfo(uint64_t n, const std::string& name) {
  static const char kNix32[] = "0123456789abcdfghijklmnpqrsvwxyz";
  std::string hash(32, '0');
  for (int i = 31; n != 0; --i, n /= 32) hash[size_t(i)] = kNix32[n % 32];
  nls::NarInfo info;
  info.store_path = nls::StorePath::FromBaseName(hash + "-" + name);
  info.url = "nar/x.nar";
  info.nar_hash = nls::Hash::Of(name);
  info.nar_size = 1;
  return info;
}

struct FileRef {
  std::string rel;
  uint32_t node;
};

void ListFiles(const nls::PathMeta& m, uint32_t node, const std::string& rel,
               std::vector<FileRef>& out) {
  const auto& n = m.node(node);
  if (n.type == nls::PathMeta::Type::kRegular) out.push_back({rel, node});
  if (n.type != nls::PathMeta::Type::kDirectory) return;
  for (uint64_t c = n.first; c < n.first + n.count; ++c)
    ListFiles(m, uint32_t(c), rel + "/" + std::string(m.name(uint32_t(c))), out);
}

int Read(const std::string& src_dir, const std::string& work, int runs) {
  // The baseline reads a fresh copy of SRC on the same file system as the cache, so both sides
  // are files written moments ago (same page-cache state, same file system).
  std::string src = work + "/copy";
  fs::remove_all(src);
  fs::copy(src_dir, src, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  nls::CacheOptions opt;
  opt.dir = work + "/cache";
  opt.sync = false;
  fs::remove_all(opt.dir);
  auto cache = nls::StoreCache::Open(opt);
  const nls::NarInfo info = BenchInfo(0, "bench");
  {
    auto w = cache->BeginWrite(info);
    FeedTree(*w, src, "");
    w->Commit();
  }
  auto cp = cache->Find(info.store_path.hash_part());
  std::vector<FileRef> files;
  ListFiles(*cp->meta, 0, "", files);
  uint64_t total = 0;
  for (const auto& f : files) total += cp->meta->node(f.node).size;
  constexpr size_t kRequest = 128 * 1024;  // FUSE's usual max_read
  std::vector<char> buf(kRequest);
  auto pass_cache = [&](nls::StoreCache& c, const nls::CachedPath& path) {
    auto t0 = Clock::now();
    uint64_t bytes = 0;
    for (const auto& f : files) {
      uint64_t off = 0;
      for (;;) {
        size_t n = c.Read(path, f.node, off, buf);
        if (n == 0) break;
        off += n;
      }
      bytes += off;
    }
    if (bytes != total) throw nls::Error("short cache pass");
    return double(bytes) / Seconds(t0, Clock::now()) / 1e6;
  };
  auto pass_fs = [&] {
    auto t0 = Clock::now();
    uint64_t bytes = 0;
    for (const auto& f : files) {
      int fd = ::open((src + f.rel).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw nls::Error("open " + src + f.rel);
      uint64_t off = 0;
      for (;;) {
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(off));
        if (n <= 0) break;
        off += uint64_t(n);
      }
      ::close(fd);
      bytes += off;
    }
    if (bytes != total) throw nls::Error("short fs pass");
    return double(bytes) / Seconds(t0, Clock::now()) / 1e6;
  };
  // Stricter baseline: the files already open (no open/close per file), pread only.
  std::vector<int> fds;
  for (const auto& f : files) fds.push_back(::open((src + f.rel).c_str(), O_RDONLY | O_CLOEXEC));
  auto pass_fs_open = [&] {
    auto t0 = Clock::now();
    uint64_t bytes = 0;
    for (int fd : fds) {
      uint64_t off = 0;
      for (;;) {
        ssize_t n = ::pread(fd, buf.data(), buf.size(), off_t(off));
        if (n <= 0) break;
        off += uint64_t(n);
      }
      bytes += off;
    }
    if (bytes != total) throw nls::Error("short fs pass");
    return double(bytes) / Seconds(t0, Clock::now()) / 1e6;
  };
  // Write both data sets back before measuring: reads racing with writeback of the just-written
  // files are noise, not read cost.
  ::sync();
  // First read after start-up re-hashes every chunk: measure it once on a fresh Open.
  cp.reset();
  cache.reset();
  cache = nls::StoreCache::Open(opt);
  cp = cache->Find(info.store_path.hash_part());
  pass_fs();  // warm the source's page cache
  double first = pass_cache(*cache, *cp);
  std::vector<double> fs_v, open_v, cache_v, ratio, ratio_open;
  for (int r = 0; r < runs; ++r) {
    double a, o, b;
    if (r % 2) {
      b = pass_cache(*cache, *cp);
      o = pass_fs_open();
      a = pass_fs();
    } else {
      a = pass_fs();
      o = pass_fs_open();
      b = pass_cache(*cache, *cp);
    }
    fs_v.push_back(a);
    open_v.push_back(o);
    cache_v.push_back(b);
    ratio.push_back(b / a);
    ratio_open.push_back(b / o);
  }
  for (int fd : fds) ::close(fd);
  auto st = cache->Stats();
  std::printf(
      "{\"bench\":\"read\",\"src\":\"%s\",\"files\":%zu,\"bytes\":%llu,\"chunks\":%llu,"
      "\"runs\":%d,\"ext4_MBps\":%.0f,\"ext4_preopened_MBps\":%.0f,\"cache_MBps\":%.0f,"
      "\"ratio\":%.3f,\"ratio_preopened\":%.3f,\"first_read_verify_MBps\":%.0f,"
      "\"request\":%zu}\n",
      src_dir.c_str(), files.size(), (unsigned long long)total, (unsigned long long)st.chunks, runs,
      Median(fs_v), Median(open_v), Median(cache_v), Median(ratio), Median(ratio_open), first,
      kRequest);
  cp.reset();
  cache.reset();
  fs::remove_all(opt.dir);
  fs::remove_all(src);
  return 0;
}

// ---------------------------------------------------------------------------------------------

int Meta(const std::string& work, int files) {
  nls::PathMetaBuilder b;
  b.AddDirectory("");
  std::mt19937_64 rng(5);
  int per_dir = 500;
  for (int d = 0; d * per_dir < files; ++d) {
    std::string dir = "share/dir" + std::to_string(d);
    if (d == 0) b.AddDirectory("share");
    b.AddDirectory(dir);
    for (int f = 0; f < per_dir && d * per_dir + f < files; ++f) {
      std::string name = dir + "/file-" + std::to_string(rng()) + ".h";
      std::string data = name;
      if (f % 50 == 0) {
        b.AddSymlink(name, "../dir0/x");
      } else {
        b.AddRegular(name, f % 7 == 0, data.size(),
                     {nls::ChunkRef{ChunkId::Of(data), uint32_t(data.size())}});
      }
    }
  }
  std::string bytes = b.Build()->Serialize();
  fs::create_directories(work);
  std::string path = work + "/meta.bin";
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  std::vector<double> ms;
  uint32_t nodes = 0;
  for (int r = 0; r < 11; ++r) {
    auto t0 = Clock::now();
    auto m = nls::PathMeta::Load(ReadFile(path));
    ms.push_back(Seconds(t0, Clock::now()) * 1000);
    nodes = m->node_count();
  }
  fs::remove(path);
  std::printf(
      "{\"bench\":\"meta\",\"nodes\":%u,\"bytes\":%zu,\"load_ms_median\":%.2f,"
      "\"load_ms_max\":%.2f}\n",
      nodes, bytes.size(), Median(ms), *std::max_element(ms.begin(), ms.end()));
  return 0;
}

int OpenTime(const std::string& work, int paths) {
  nls::CacheOptions opt;
  opt.dir = work + "/open-cache";
  opt.sync = false;
  fs::remove_all(opt.dir);
  {
    nls::CacheOptions fill = opt;
    fill.chunking = ChunkerParams::Fixed(4096);
    auto cache = nls::StoreCache::Open(fill);
    std::mt19937_64 rng(1);
    std::string data(1 << 20, '\0');
    for (int n = 0; n < paths; ++n) {
      auto w = cache->BeginWrite(BenchInfo(uint64_t(n) + 1, "open"));
      w->CreateDirectory("");
      for (int f = 0; f < 4; ++f) {
        for (size_t i = 0; i < data.size(); i += 8) {
          const uint64_t v = rng();
          std::memcpy(&data[i], &v, 8);
        }
        const std::string name = "f" + std::to_string(f);
        w->BeginRegular(name, false, data.size(), 0);
        w->RegularData(data);
        w->EndRegular();
      }
      w->Commit();
    }
  }
  uint64_t chunks = 0;
  auto timed_open = [&] {
    auto t0 = Clock::now();
    auto cache = nls::StoreCache::Open(opt);
    const double s = Seconds(t0, Clock::now());
    chunks = cache->Stats().chunks;
    return s;
  };
  std::vector<double> warm;
  for (int i = 0; i < 5; ++i) warm.push_back(timed_open());
  std::string cold = "null";
  ::sync();
  if (FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    const bool dropped = std::fputs("3\n", f) >= 0;
    if (std::fclose(f) == 0 && dropped) cold = std::to_string(timed_open());
  }
  std::printf(
      "{\"bench\":\"open\",\"paths\":%d,\"chunks\":%llu,\"open_s_warm_median\":%.3f,"
      "\"open_s_cold\":%s}\n",
      paths, (unsigned long long)chunks, Median(warm), cold.c_str());
  fs::remove_all(opt.dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "dedup" && argc == 4) return Dedup(argv[2], argv[3]);
    if (mode == "dedup-edit" && argc == 3) return Dedup(argv[2], "");
    if (mode == "read" && (argc == 4 || argc == 5))
      return Read(argv[2], argv[3], argc == 5 ? std::stoi(argv[4]) : 5);
    if (mode == "meta" && (argc == 3 || argc == 4))
      return Meta(argv[2], argc == 4 ? std::stoi(argv[3]) : 50000);
    if (mode == "open" && (argc == 3 || argc == 4))
      return OpenTime(argv[2], argc == 4 ? std::stoi(argv[3]) : 250);
    std::cerr << "usage: cache_bench dedup A B | dedup-edit A | read SRC WORKDIR [runs] | meta "
                 "WORKDIR [files] | open WORKDIR [paths]\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cache_bench: " << e.what() << "\n";
    return 1;
  }
}
