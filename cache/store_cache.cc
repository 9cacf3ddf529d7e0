// The chunk cache. On-disk layout, fsync policy and recovery: docs/cache.md.
#include "cache/store_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "fetch/error.h"
#include "fetch/free_list.h"
#include "fetch/nar_parser.h"

namespace nls {

namespace {

constexpr char kPathMagic[8] = {'N', 'L', 'S', 'P', 'A', 'T', 'H', '1'};
constexpr uint32_t kPathVersion = 1;
constexpr size_t kPathHeader = 8 + 4 + 4 + 8;             // magic, version, narinfo length, id
constexpr size_t kIdRecord = StorePath::kHashLength + 1;  // "<hash part>\n"
constexpr size_t kSyncEachChunkLimit = 64;  // more new chunks than this: one syncfs instead
constexpr int64_t kTouchIntervalSec = 60;   // LRU persistence granularity (meta file mtime)

std::mutex g_logger_mu;
std::function<void(std::string_view)> g_logger;

void Log(const std::string& line) {
  std::function<void(std::string_view)> logger;
  {
    std::lock_guard lock(g_logger_mu);
    logger = g_logger;
  }
  if (logger) {
    logger(line);
  } else {
    std::cerr << "nix-lazy-store: cache: " << line << std::endl;
  }
}

std::string Errno(int err) { return std::strerror(err); }

[[noreturn]] void ThrowSys(const std::string& what, int err = errno) {
  throw Error(what + ": " + Errno(err));
}

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

void WriteAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowSys("writing " + what);
    }
    data.remove_prefix(size_t(n));
  }
}

// Reads the whole file; nullopt if it does not exist.
std::optional<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return std::nullopt;
    ThrowSys("opening " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) ThrowSys("stat " + path);
  std::string data(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd.get(), data.data() + got, data.size() - got, off_t(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowSys("reading " + path);
    if (n == 0) break;
    got += size_t(n);
  }
  data.resize(got);
  return data;
}

void FsyncPath(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) ThrowSys("fsync " + path);
}

uint64_t DiskBytes(const struct stat& st) { return uint64_t(st.st_blocks) * 512; }

// Creates `path` exclusively (mode 0444) for writing; `origin` says what it is for.
UniqueFd CreateNew(const std::string& path, const std::string& origin) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (fd.get() < 0) ThrowSys("creating " + path + " for " + origin);
  return fd;
}

// Writes `data` into the new file `fd` (at `path`) and returns its disk usage. On failure
// removes `path` and rethrows.
uint64_t FillNewFile(int fd, std::string_view data, const std::string& path) {
  try {
    WriteAll(fd, data, path);
    struct stat st;
    if (::fstat(fd, &st) != 0) ThrowSys("stat " + path);
    return DiskBytes(st);
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) {
    if (errno == ENOENT) return names;
    ThrowSys("listing " + path);
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  ::closedir(d);
  return names;
}

// A chunk file found at start-up (Recover).
struct ChunkOnDisk {
  uint64_t size, disk;
};

// What one subdirectory of chunks/ holds: its valid chunk files, and the problems found (files
// that do not belong there, or with fsck chunks whose contents do not match their name; both
// removed).
struct ChunkDirScan {
  std::optional<uint8_t> prefix;  // unset: not a chunk subdirectory (left alone)
  std::vector<std::pair<ChunkId, ChunkOnDisk>> chunks;
  std::vector<std::string> problems;
  bool unrepaired = false;  // a removal failed
};

ChunkDirScan ScanChunkDir(const std::string& chunks_dir, const std::string& sub, bool fsck) {
  ChunkDirScan scan;
  const std::string subdir = chunks_dir + "/" + sub;
  auto prefix = ChunkId::FromHex(sub + std::string(30, '0'));
  if (sub.size() != 2 || !prefix) {
    scan.problems.push_back("unexpected entry " + subdir + " (left alone)");
    return scan;
  }
  scan.prefix = prefix->bytes[0];
  UniqueFd dir(::open(subdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) ThrowSys("opening " + subdir);
  for (const auto& name : ListDir(subdir)) {
    auto id = ChunkId::FromHex(name);
    struct stat st;
    // Relative to the directory: no walk of the whole path per chunk.
    if (!id || name.substr(0, 2) != sub ||
        ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
      scan.problems.push_back("removing unexpected file " + subdir + "/" + name);
      if (::unlinkat(dir.get(), name.c_str(), 0) != 0) scan.unrepaired = true;
      continue;
    }
    if (fsck) {
      auto data = ReadFile(subdir + "/" + name);
      if (!data || ChunkId::Of(*data) != *id) {
        scan.problems.push_back("chunk " + subdir + "/" + name +
                                " is corrupt (contents do not match its XXH3-128 name); removed");
        if (::unlinkat(dir.get(), name.c_str(), 0) != 0) scan.unrepaired = true;
        continue;
      }
    }
    scan.chunks.emplace_back(*id, ChunkOnDisk{uint64_t(st.st_size), DiskBytes(st)});
  }
  return scan;
}

// Scans every subdirectory of `chunks_dir` (in the order listed), several at once: after a
// reboot the scan mostly waits for inode reads, and fsck hashes every chunk. Returns the scans
// in order, so that the problems are reported as a single thread would.
std::vector<ChunkDirScan> ScanChunkDirs(const std::string& chunks_dir, bool fsck) {
  const std::vector<std::string> subs = ListDir(chunks_dir);
  std::vector<ChunkDirScan> scans(subs.size());
  std::atomic<size_t> next{0};
  std::mutex error_mu;
  std::exception_ptr error;
  auto work = [&] {
    for (size_t i; (i = next++) < subs.size();) {
      try {
        scans[i] = ScanChunkDir(chunks_dir, subs[i], fsck);
      } catch (...) {
        std::lock_guard lock(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  const size_t threads =
      std::min<size_t>({subs.size(), 16, std::max<size_t>(4, std::thread::hardware_concurrency())});
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return scans;
}

void PutLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char(v >> (8 * i)));
}
uint64_t GetLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

// A metadata file: header, narinfo text, PathMeta::Serialize(), XXH3-64 of all before.
std::string EncodePathFile(uint64_t id, const NarInfo& info, const PathMeta& meta) {
  std::string narinfo = info.ToString();
  std::string out(kPathMagic, 8);
  PutLe(out, kPathVersion, 4);
  PutLe(out, narinfo.size(), 4);
  PutLe(out, id, 8);
  out += narinfo;
  out += meta.Serialize();
  PutLe(out, XXH3_64bits(out.data(), out.size()), 8);
  return out;
}

struct DecodedPath {
  uint64_t id;
  NarInfo info;
  std::shared_ptr<const PathMeta> meta;
};

DecodedPath DecodePathFile(std::string_view data, std::string_view hash_part,
                           const std::string& origin) {
  auto bad = [&](const std::string& why) { return FormatError(origin + ": " + why); };
  if (data.size() < kPathHeader + 8) throw bad("truncated");
  if (std::memcmp(data.data(), kPathMagic, 8) != 0) throw bad("bad magic");
  if (GetLe(data.data() + 8, 4) != kPathVersion) throw bad("unsupported version");
  if (XXH3_64bits(data.data(), data.size() - 8) != GetLe(data.data() + data.size() - 8, 8))
    throw bad("checksum mismatch");
  uint64_t narinfo_len = GetLe(data.data() + 12, 4);
  if (narinfo_len > data.size() - kPathHeader - 8) throw bad("bad narinfo length");
  DecodedPath d{.id = GetLe(data.data() + 16, 8),
                .info = NarInfo::Parse(data.substr(kPathHeader, narinfo_len), origin, hash_part),
                .meta = nullptr};
  try {
    d.meta = PathMeta::Load(
        data.substr(kPathHeader + narinfo_len, data.size() - kPathHeader - narinfo_len - 8));
  } catch (const FormatError& e) {
    throw bad(e.what());
  }
  return d;
}

struct OpenChunk {
  UniqueFd fd;
};

}  // namespace

void SetCacheLogger(std::function<void(std::string_view)> logger) {
  std::lock_guard lock(g_logger_mu);
  g_logger = std::move(logger);
}

class StoreCacheImpl;

// A chunk being written as its bytes arrive: the running XXH3-128 of its bytes, which names it
// once complete (StoreCacheImpl::AdoptChunk), and the bytes themselves, gathered in a buffer as
// large as the largest chunk. They reach the disk in one write when the chunk is complete, and
// only when the cache does not have that chunk yet, into an unnamed file (O_TMPFILE in
// DIR/chunks; a named one in DIR/tmp where O_TMPFILE is missing) that is then linked under the
// chunk's name.
//
// Why gather: one large write lets the kernel cache the file in large folios, which later reads
// copy or splice markedly faster than the small folios that many small, unaligned writes leave
// (docs/cache.md, "Writing a path"). Buffers come from and go back to a small stock (`buffers_`),
// so a new chunk does not fault fresh pages in.
class ChunkFile {
 public:
  ChunkFile() = default;
  ~ChunkFile() { Discard(); }
  ChunkFile(const ChunkFile&) = delete;
  ChunkFile& operator=(const ChunkFile&) = delete;

  // A chunk is in progress (StoreCacheImpl::BeginChunk, until adopted or discarded).
  bool started() const { return started_; }
  uint64_t size() const { return size_; }
  // Gives the gather buffer back to the stock it came from.
  void ReturnBuffer() {
    if (buffers_ != nullptr && pending_.capacity() > 0) {
      pending_.clear();
      buffers_->Give(std::move(pending_));
    }
    pending_ = std::string();
    buffers_ = nullptr;
  }
  // Ends the chunk: closes the file, if any, and removes the named temporary, if any (an unnamed
  // one just vanishes).
  void Discard() {
    fd_.reset();
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
    ReturnBuffer();
    size_ = 0;
    started_ = false;
  }

 private:
  friend class StoreCacheImpl;
  bool started_ = false;
  UniqueFd fd_;      // created when the first bytes must be written
  std::string tmp_;  // the named temporary (no O_TMPFILE), else empty
  ChunkIdHasher hash_;
  uint64_t size_ = 0;
  std::string pending_;                       // gathered bytes not written yet
  FreeList<std::string>* buffers_ = nullptr;  // where pending_'s buffer goes back to
};

class PathWriterImpl : public PathWriter {
 public:
  PathWriterImpl(StoreCacheImpl& cache, const NarInfo& info);
  ~PathWriterImpl() override;

  void CreateDirectory(std::string_view path) override { builder_.AddDirectory(path); }
  void BeginRegular(std::string_view path, bool executable, uint64_t size, uint64_t) override;
  void RegularData(std::string_view data) override;
  void EndRegular() override;
  void CreateSymlink(std::string_view path, std::string_view target) override {
    builder_.AddSymlink(path, target);
  }
  std::shared_ptr<CachedPath> Commit() override;

 private:
  friend class StoreCacheImpl;
  std::string Origin() const { return "store path " + info_.store_path.base_name(); }
  // Completes the chunk being written (the cutter ended it, or the file ended).
  void EndChunk();
  // Completes the pack (the small files collected so far) as one chunk and adds those files.
  void FlushPack();

  StoreCacheImpl& cache_;
  NarInfo info_;
  PathMetaBuilder builder_;
  bool in_file_ = false;
  bool committed_ = false;
  std::string file_path_;
  bool file_exec_ = false;
  uint64_t file_size_ = 0, file_got_ = 0;
  std::vector<ChunkRef> file_chunks_;
  // A large file's bytes go straight into chunk files, cut where CutFinder says: nothing of
  // them is held in memory.
  CutFinder cutter_;
  ChunkFile chunk_;
  // Small files (1 to chunking.min bytes) are packed, in NAR order, into chunks of up to
  // chunking.max bytes: one chunk file for many small files instead of one each. They are added
  // to the metadata when their pack is complete (its id is the hash of the whole pack).
  struct PackedFile {
    std::string path;
    bool executable;
    uint32_t size, offset;
  };
  bool file_packed_ = false;
  ChunkFile pack_;
  std::vector<PackedFile> pack_files_;
  // Chunks this writer holds a reference on (each once); the path takes them over on Commit.
  std::unordered_set<ChunkId, ChunkIdHash> held_;
};

class StoreCacheImpl : public StoreCache {
 public:
  using Report = std::function<void(std::string_view)>;

  // `fsck`: re-hash every chunk during recovery and report each problem to `report`.
  StoreCacheImpl(const CacheOptions& options, bool fsck, Report report);
  ~StoreCacheImpl() override;

  std::shared_ptr<CachedPath> Find(std::string_view hash_part) override {
    return FindCounting(hash_part, true);
  }
  std::shared_ptr<CachedPath> FindAgain(std::string_view hash_part) override {
    return FindCounting(hash_part, false);
  }
  std::shared_ptr<CachedPath> FindCounting(std::string_view hash_part, bool count_miss);
  std::shared_ptr<CachedPath> FindById(uint64_t id) override;
  uint64_t IdFor(const StorePath& path) override;
  std::vector<StorePath> List() override;
  std::unique_ptr<PathWriter> BeginWrite(const NarInfo& info) override {
    return std::make_unique<PathWriterImpl>(*this, info);
  }
  size_t Read(const CachedPath& path, uint32_t node, uint64_t offset, std::span<char> out) override;
  std::optional<std::vector<Extent>> Extents(const CachedPath& path, uint32_t node, uint64_t offset,
                                             size_t size, size_t max_extents) override;
  void Evict(std::optional<uint64_t> target_bytes) override;
  void EvictIfOver() override { MaybeEvict({}); }
  void SetEvictionGuard(std::function<bool(uint64_t id)> in_use,
                        std::function<void(const CachedPath&)> probe,
                        double probe_interval_s) override {
    {
      std::lock_guard lock(mu_);
      in_use_ = std::move(in_use);
    }
    std::lock_guard lock(listener_mu_);
    probe_ = std::move(probe);
    probe_interval_s_ = probe_interval_s;
  }

  void SetEvictionListener(std::function<void(const CachedPath&)> listener) override {
    std::lock_guard lock(listener_mu_);
    listener_ = std::move(listener);
  }
  void SetListingListener(std::function<void()> listener) override {
    std::lock_guard lock(listener_mu_);
    listing_listener_ = std::move(listener);
  }
  void ListingChanged() {
    std::function<void()> listener;
    {
      std::lock_guard lock(listener_mu_);
      listener = listing_listener_;
    }
    if (listener) listener();
  }
  CacheStats Stats() override;
  uint64_t BytesUsed() override {
    std::lock_guard lock(mu_);
    return UsageLocked();
  }
  void WaitDurable() override;

  bool unrepaired() const { return unrepaired_; }

 private:
  friend class PathWriterImpl;

  struct ChunkEntry {
    uint32_t refs = 0;  // committed paths using it + writers holding it
    uint32_t size = 0;
    uint64_t disk = 0;     // st_blocks * 512 once written
    bool written = false;  // the file exists under its final name
    bool durable = false;  // written and synced (or found on disk at start-up)
  };
  struct PathEntry {
    std::shared_ptr<CachedPath> cp;
    uint64_t last_used = 0;
    uint64_t meta_disk = 0;
    int64_t touched_sec = 0;   // last time the meta file's mtime was set (LRU persistence)
    double probed_at = -1e18;  // steady seconds of the last eviction probe (SetEvictionGuard)
    // Committed but not durable yet: the metadata waits under this name in tmp/ until the
    // durability worker has synced its chunks and renames it into paths/. Empty: in paths/.
    std::string pending_meta;
  };
  // A committed path handed to the durability worker.
  struct PendingPath {
    std::string hash;
    std::string base_name;        // for log lines
    std::string tmp;              // its metadata file in tmp/ (unique: identifies the commit)
    std::vector<ChunkId> chunks;  // its chunks that were not durable at commit
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<ChunkId, std::shared_ptr<OpenChunk>, ChunkIdHash> open;
    std::deque<ChunkId> order;  // FIFO of open fds, for the bound
    std::unordered_set<ChunkId, ChunkIdHash> verified;
    uint64_t forgotten = 0;  // ForgetChunk calls: a descriptor opened before one is not kept
  };
  static constexpr size_t kShards = 16;

  std::string ChunkDir(const ChunkId& id) const {
    return dir_ + "/chunks/" + id.ToHex().substr(0, 2);
  }
  std::string ChunkPath(const ChunkId& id) const {
    std::string hex = id.ToHex();
    return dir_ + "/chunks/" + hex.substr(0, 2) + "/" + hex;
  }
  std::string MetaPath(std::string_view hash_part) const {
    return dir_ + "/paths/" + std::string(hash_part);
  }
  std::string TmpName(std::string_view what) {
    return dir_ + "/tmp/" + std::string(what) + "." + std::to_string(::getpid()) + "." +
           std::to_string(tmp_counter_.fetch_add(1));
  }
  Shard& ShardOf(const ChunkId& id) { return shards_[id.bytes[15] % kShards]; }
  uint64_t UsageLocked() const { return chunk_disk_ + meta_disk_ + fixed_disk_; }
  void Problem(const std::string& what) {
    ++problems_;
    if (report_) {
      report_(what);
    } else {
      Log(dir_ + ": " + what);
    }
  }

  void TakeLock();
  void LoadIds();
  void Recover(bool fsck);

  // Writer side. A chunk is begun, appended to, then adopted: named by its hash, written and
  // linked into DIR/chunks (or dropped if that chunk exists already), referenced by the writer.
  void BeginChunk(ChunkFile& f);
  void AppendChunkFile(ChunkFile& f, std::string_view data, const std::string& origin);
  ChunkId AdoptChunk(PathWriterImpl& w, ChunkFile& f);
  void WriteGathered(ChunkFile& f, const std::string& origin);  // creates the file if needed
  void EnsureSubdir(uint8_t first_byte);  // DIR/chunks/xx for chunks whose id starts with it
  void ReleaseChunksLocked(const std::unordered_set<ChunkId, ChunkIdHash>& ids);
  void DeleteChunkFileLocked(const ChunkId& id, ChunkEntry& e);
  std::shared_ptr<CachedPath> CommitPath(PathWriterImpl& w);
  void AbortWriter(PathWriterImpl& w);
  // Makes chunk files durable (fdatasync each, or one syncfs for many), with `extra_files`
  // (fsync'd) and the ids file. Chunks removed meanwhile are skipped. Throws on I/O errors.
  void SyncChunks(const std::vector<ChunkId>& chunks, const std::vector<std::string>& extra_files);
  // Durability worker: syncs committed paths in batches and moves their metadata into paths/.
  void DurabilityLoop();
  void MakeDurable(std::vector<PendingPath>& batch);

  // Removes a path from the index and disk; returns it. mu_ held.
  std::shared_ptr<CachedPath> DropLocked(const std::string& hash_part);
  std::unordered_set<std::string> PinnedLocked() const;
  void EvictTo(uint64_t target, std::string_view exclude);
  void MaybeEvict(std::string_view just_committed);

  // Reader side.
  std::shared_ptr<OpenChunk> GetChunkFd(const ChunkId& id, bool* verified);
  // Checks that `node` is a regular file of `path` (else Error naming `caller`).
  const PathMeta& RegularFile(const CachedPath& path, uint32_t node, const char* caller) const;
  // GetChunkFd for chunk `c` of file `node`; a missing chunk drops the path (Corrupt), other
  // failures (out of descriptors) throw Error and keep it.
  std::shared_ptr<OpenChunk> OpenChunkOf(const CachedPath& path, uint32_t node, const ChunkRef& c,
                                         bool* verified);
  void MarkVerified(const ChunkId& id);
  void ForgetChunk(const ChunkId& id);
  // Chunk `chunk` of file `node`, read through `fd` (-1: it was missing when opened), is
  // damaged: deletes the chunk's file, drops `path` if it is the indexed copy, logs and throws
  // IntegrityError. If the chunk's file is not the damaged one any more (a writer linked a fresh
  // copy after an earlier drop), only throws: reading again reads the fresh copy.
  [[noreturn]] void Corrupt(const CachedPath& path, uint32_t node, const ChunkRef& chunk, int fd,
                            const std::string& why);
  std::string FilePath(const CachedPath& path, uint32_t node) const;

  CacheOptions opt_;
  // ChunkFile's gather buffers: as large as the largest chunk (or pack), 64 KiB at least, 16 MiB
  // at most. Eight are kept for reuse (8 MiB with the default chunking).
  const size_t gather_size_ =
      std::clamp<size_t>(std::max(opt_.chunking.max, opt_.chunking.avg), 64 * 1024, 16 << 20);
  FreeList<std::string> gather_buffers_{8};
  std::string dir_;
  Report report_;
  UniqueFd lock_fd_;
  UniqueFd dir_fd_;
  std::atomic<uint64_t> tmp_counter_{0};
  // Chunk files are created with O_TMPFILE and linked through /proc/self/fd (needs /proc).
  const bool use_tmpfile_ = opt_.unnamed_chunk_files && ::access("/proc/self/fd", F_OK) == 0;
  size_t fd_cap_ = 0;  // max_open_chunks, bounded by RLIMIT_NOFILE
  uint64_t problems_ = 0;
  bool unrepaired_ = false;

  std::mutex mu_;  // guards the index below
  std::unordered_map<std::string, PathEntry> paths_;
  std::unordered_map<ChunkId, ChunkEntry, ChunkIdHash> chunks_;
  std::array<bool, 256> subdir_made_{};
  uint64_t clock_ = 0;
  uint64_t chunk_disk_ = 0, meta_disk_ = 0, fixed_disk_ = 0;
  uint64_t unique_bytes_ = 0, logical_bytes_ = 0;

  std::mutex ids_mu_;  // guards the id map and the ids file
  UniqueFd ids_fd_;
  std::unordered_map<std::string, uint64_t> ids_;
  std::unordered_map<uint64_t, std::string> id_hashes_;
  uint64_t id_records_ = 0;

  std::array<Shard, kShards> shards_;

  std::mutex listener_mu_;
  std::function<void(const CachedPath&)> listener_;
  std::function<void(const CachedPath&)> probe_;  // under listener_mu_
  std::function<void()> listing_listener_;        // under listener_mu_
  double probe_interval_s_ = 30;                  // under listener_mu_
  std::function<bool(uint64_t)> in_use_;          // under mu_

  std::mutex durable_mu_;  // guards the durability queue (taken before mu_, never inside it)
  std::condition_variable durable_cv_;       // work queued or stopping
  std::condition_variable durable_done_cv_;  // a batch finished
  std::deque<PendingPath> durable_queue_;
  uint64_t durable_queued_ = 0, durable_done_ = 0;  // paths handed over / finished
  bool durable_stop_ = false;
  int durable_hurry_ = 0;  // WaitDurable callers: no delay
  std::thread durable_thread_;

  std::atomic<uint64_t> hits_{0}, misses_{0}, evictions_{0}, refetches_{0};
};

// ---------------------------------------------------------------------------------------------
// Opening and recovery.

StoreCacheImpl::StoreCacheImpl(const CacheOptions& options, bool fsck, Report report)
    : opt_(options), dir_(options.dir), report_(std::move(report)) {
  if (dir_.empty()) throw ConfigError("cache directory: empty path");
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  if (opt_.low_watermark > opt_.high_watermark || opt_.high_watermark <= 0 ||
      opt_.high_watermark > 1 || opt_.low_watermark < 0)
    throw ConfigError("cache " + dir_ + ": watermarks must satisfy 0 <= low <= high <= 1");
  // mkdir -p
  for (size_t pos = 1; pos <= dir_.size(); ++pos) {
    if (pos == dir_.size() || dir_[pos] == '/') {
      std::string sub = dir_.substr(0, pos);
      if (::mkdir(sub.c_str(), 0755) != 0 && errno != EEXIST)
        throw ConfigError("cannot create cache directory " + sub + ": " + Errno(errno));
    }
  }
  TakeLock();
  for (const char* sub : {"/tmp", "/chunks", "/paths"}) {
    std::string p = dir_ + sub;
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST)
      throw ConfigError("cannot create " + p + ": " + Errno(errno));
  }
  // Keep the descriptor cache well inside RLIMIT_NOFILE (the soft limit is often 1024): the
  // rest of the process (FUSE, sockets, writers) needs descriptors too.
  fd_cap_ = opt_.max_open_chunks;
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    fd_cap_ = std::min<size_t>(fd_cap_, std::max<size_t>(kShards, size_t(rl.rlim_cur) / 2));
  dir_fd_ = UniqueFd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd_.get() < 0) ThrowSys("opening " + dir_);
  LoadIds();
  Recover(fsck);
  if (opt_.sync && !fsck) durable_thread_ = std::thread([this] { DurabilityLoop(); });
}

StoreCacheImpl::~StoreCacheImpl() {
  if (durable_thread_.joinable()) {
    {
      std::lock_guard lock(durable_mu_);
      durable_stop_ = true;
    }
    durable_cv_.notify_all();
    durable_thread_.join();  // the worker finishes the queue first
  }
}

void StoreCacheImpl::TakeLock() {
  std::string path = dir_ + "/lock";
  lock_fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (lock_fd_.get() < 0) throw ConfigError("cannot open " + path + ": " + Errno(errno));
  if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      std::string pid = ReadFile(path).value_or("");
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      throw ConfigError("cache directory " + dir_ + " is in use by another process (pid " +
                        (pid.empty() ? std::string("unknown") : pid) + " holds " + path +
                        "); only one nix-lazy-store daemon or fsck may use a cache directory");
    }
    throw ConfigError("cannot lock " + path + ": " + Errno(err));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_.get(), 0) != 0 ||
      ::pwrite(lock_fd_.get(), pid.data(), pid.size(), 0) != ssize_t(pid.size()))
    throw ConfigError("cannot write pid into " + path + ": " + Errno(errno));
}

void StoreCacheImpl::LoadIds() {
  std::string path = dir_ + "/ids";
  ids_fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (ids_fd_.get() < 0) ThrowSys("opening " + path);
  std::string data = ReadFile(path).value_or("");
  size_t whole = data.size() / kIdRecord * kIdRecord;
  if (whole != data.size()) {
    // A torn append (crash mid-write): the id was never handed out durably. Drop the tail.
    Problem("ids file " + path + ": removed a partial record at the end (" +
            std::to_string(data.size() - whole) + " bytes)");
    if (::ftruncate(ids_fd_.get(), off_t(whole)) != 0) ThrowSys("truncating " + path);
  }
  id_records_ = whole / kIdRecord;
  for (uint64_t i = 0; i < id_records_; ++i) {
    std::string_view rec = std::string_view(data).substr(i * kIdRecord, kIdRecord);
    std::string_view hash = rec.substr(0, StorePath::kHashLength);
    if (rec.back() != '\n' || !StorePath::IsValidHashPart(hash)) {
      // The id stays reserved (never reused); the record is unusable.
      Problem("ids file " + path + ": record " + std::to_string(i + 1) + " is damaged");
      continue;
    }
    if (ids_.emplace(std::string(hash), i + 1).second) id_hashes_[i + 1] = std::string(hash);
  }
}

void StoreCacheImpl::Recover(bool fsck) {
  // 1. Temporaries: incomplete chunk or metadata files of writers that died.
  uint64_t tmp_removed = 0;
  for (const auto& name : ListDir(dir_ + "/tmp")) {
    std::string p = dir_ + "/tmp/" + name;
    if (::unlink(p.c_str()) != 0) {
      Problem("cannot remove temporary " + p + ": " + Errno(errno));
      unrepaired_ = true;
    }
    ++tmp_removed;
  }
  // 2. Chunk files on disk (ScanChunkDirs).
  std::vector<ChunkDirScan> scans = ScanChunkDirs(dir_ + "/chunks", fsck);
  size_t found = 0;
  for (const ChunkDirScan& scan : scans) found += scan.chunks.size();
  std::unordered_map<ChunkId, ChunkOnDisk, ChunkIdHash> on_disk(found);
  chunks_.reserve(found);
  for (const ChunkDirScan& scan : scans) {
    if (scan.prefix) subdir_made_[*scan.prefix] = true;
    for (const std::string& what : scan.problems) Problem(what);
    unrepaired_ = unrepaired_ || scan.unrepaired;
    for (const auto& [id, d] : scan.chunks) on_disk.emplace(id, d);
  }
  scans.clear();
  // 3. Metadata files: each must decode and reference only chunks present with the right size.
  std::vector<std::pair<int64_t, std::string>> by_mtime;
  for (const auto& name : ListDir(dir_ + "/paths")) {
    std::string p = dir_ + "/paths/" + name;
    auto drop = [&](const std::string& why) {
      Problem("store path metadata " + p + ": " + why + "; path dropped");
      if (::unlink(p.c_str()) != 0) unrepaired_ = true;
    };
    if (!StorePath::IsValidHashPart(name)) {
      drop("not a hash part");
      continue;
    }
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) continue;
    DecodedPath d;
    try {
      d = DecodePathFile(ReadFile(p).value_or(""), name, p);
    } catch (const Error& e) {
      drop(e.what());
      continue;
    }
    std::unordered_set<ChunkId, ChunkIdHash> distinct;
    std::string missing;
    for (const ChunkRef& c : d.meta->all_chunks()) {
      auto it = on_disk.find(c.id);
      if (it == on_disk.end()) {
        missing = "chunk " + c.id.ToHex() + " is missing";
        break;
      }
      if (uint64_t(c.offset) + c.size > it->second.size) {
        missing = "chunk " + c.id.ToHex() + " is too short";
        break;
      }
      distinct.insert(c.id);
    }
    if (!missing.empty()) {
      drop(missing);
      continue;
    }
    {
      std::lock_guard lock(ids_mu_);
      auto it = ids_.find(name);
      if (it == ids_.end() || it->second != d.id) {
        // Ids are assigned (and made durable) before Commit, so this is damage: keep the path
        // under the id the ids file has, or give it a new one.
        Problem("store path metadata " + p + ": id " + std::to_string(d.id) +
                " does not match the ids file");
      }
    }
    for (const ChunkId& id : distinct) {
      auto& e = chunks_[id];
      if (e.refs++ == 0) {
        e.size = uint32_t(on_disk[id].size);
        e.disk = on_disk[id].disk;
        e.written = true;
        e.durable = true;
        chunk_disk_ += e.disk;
        unique_bytes_ += e.size;
      }
    }
    auto cp = std::make_shared<CachedPath>(0, d.info.store_path, d.info, d.meta);
    PathEntry entry{.cp = cp,
                    .last_used = 0,
                    .meta_disk = DiskBytes(st),
                    .touched_sec = int64_t(st.st_mtime),
                    .pending_meta = {}};
    meta_disk_ += entry.meta_disk;
    logical_bytes_ += cp->meta->content_bytes();
    by_mtime.emplace_back(int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, name);
    paths_.emplace(name, std::move(entry));
  }
  for (auto& [name, entry] : paths_) entry.cp->id = IdFor(entry.cp->path);
  std::sort(by_mtime.begin(), by_mtime.end());
  for (const auto& [t, name] : by_mtime) paths_[name].last_used = ++clock_;
  // 4. Orphan chunks: written by a writer that never committed, or left by an interrupted
  //    eviction (metadata already gone).
  uint64_t orphans = 0;
  for (const auto& [id, d] : on_disk) {
    if (chunks_.count(id)) continue;
    std::string p = ChunkPath(id);
    if (::unlink(p.c_str()) != 0) {
      Problem("cannot remove orphan chunk " + p + ": " + Errno(errno));
      unrepaired_ = true;
    }
    ++orphans;
  }
  if (fsck && (orphans || tmp_removed)) {
    Problem("removed " + std::to_string(orphans) + " orphan chunks and " +
            std::to_string(tmp_removed) + " temporary files (left by an interrupted write)");
  }
  if (!fsck && (orphans || tmp_removed)) {
    Log("recovered " + dir_ + ": removed " + std::to_string(orphans) + " orphan chunks and " +
        std::to_string(tmp_removed) + " temporary files");
  }
  // Fixed overhead the budget also counts: the directories, the lock and ids files.
  fixed_disk_ = 0;
  auto add = [&](const std::string& p) {
    struct stat st;
    if (::stat(p.c_str(), &st) == 0) fixed_disk_ += DiskBytes(st);
  };
  for (const char* p : {"", "/tmp", "/chunks", "/paths", "/lock", "/ids"}) add(dir_ + p);
  for (int i = 0; i < 256; ++i) {
    if (!subdir_made_[i]) continue;
    ChunkId id;
    id.bytes[0] = uint8_t(i);
    add(ChunkDir(id));
  }
}

// ---------------------------------------------------------------------------------------------
// Ids.

uint64_t StoreCacheImpl::IdFor(const StorePath& path) {
  std::lock_guard lock(ids_mu_);
  std::string hash(path.hash_part());
  auto it = ids_.find(hash);
  if (it != ids_.end()) return it->second;
  std::string rec = hash + "\n";
  off_t at = off_t(id_records_ * kIdRecord);
  if (::pwrite(ids_fd_.get(), rec.data(), rec.size(), at) != ssize_t(rec.size()))
    ThrowSys("appending to " + dir_ + "/ids for store path " + path.base_name());
  // Not synced here: the durability worker syncs the ids file before any metadata file that
  // holds this id reaches paths/. An id lost in a power failure was never on disk elsewhere, so
  // handing it out again after the restart is harmless.
  uint64_t id = ++id_records_;
  ids_.emplace(hash, id);
  id_hashes_.emplace(id, hash);
  return id;
}

std::shared_ptr<CachedPath> StoreCacheImpl::FindById(uint64_t id) {
  std::string hash;
  {
    std::lock_guard lock(ids_mu_);
    auto it = id_hashes_.find(id);
    if (it == id_hashes_.end()) return nullptr;
    hash = it->second;
  }
  std::lock_guard lock(mu_);
  auto it = paths_.find(hash);
  return it == paths_.end() ? nullptr : it->second.cp;
}

// ---------------------------------------------------------------------------------------------
// Lookup.

std::shared_ptr<CachedPath> StoreCacheImpl::FindCounting(std::string_view hash_part,
                                                         bool count_miss) {
  std::lock_guard lock(mu_);
  auto it = paths_.find(std::string(hash_part));
  if (it == paths_.end()) {
    if (count_miss) ++misses_;
    return nullptr;
  }
  ++hits_;
  PathEntry& e = it->second;
  e.last_used = ++clock_;
  // Persist recency lazily: the meta file's mtime orders paths after a restart.
  int64_t now = int64_t(::time(nullptr));
  if (now - e.touched_sec >= kTouchIntervalSec) {
    e.touched_sec = now;
    ::utimensat(AT_FDCWD, MetaPath(hash_part).c_str(), nullptr, 0);
  }
  return e.cp;
}

std::vector<StorePath> StoreCacheImpl::List() {
  std::lock_guard lock(mu_);
  std::vector<StorePath> out;
  out.reserve(paths_.size());
  for (const auto& [h, e] : paths_) out.push_back(e.cp->path);
  std::sort(out.begin(), out.end());
  return out;
}

CacheStats StoreCacheImpl::Stats() {
  std::lock_guard lock(mu_);
  CacheStats s;
  s.bytes_used = UsageLocked();
  s.paths = paths_.size();
  s.chunks = chunks_.size();
  s.logical_bytes = logical_bytes_;
  s.unique_bytes = unique_bytes_;
  s.hits = hits_;
  s.misses = misses_;
  s.evictions = evictions_;
  s.refetches = refetches_;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Writing.

PathWriterImpl::PathWriterImpl(StoreCacheImpl& cache, const NarInfo& info)
    : cache_(cache), info_(info), cutter_(cache.opt_.chunking) {}

void PathWriterImpl::BeginRegular(std::string_view path, bool executable, uint64_t size, uint64_t) {
  if (in_file_) throw FormatError(Origin() + ": BeginRegular inside a file");
  in_file_ = true;
  file_path_ = std::string(path);
  file_exec_ = executable;
  file_size_ = size;
  file_got_ = 0;
  file_chunks_.clear();
  const ChunkerParams& p = cache_.opt_.chunking;
  file_packed_ = size > 0 && size <= p.min && p.min <= p.max;
  if (file_packed_ && pack_.size() + size > p.max) FlushPack();
  cutter_.Reset();
}

void PathWriterImpl::RegularData(std::string_view data) {
  if (!in_file_) throw FormatError(Origin() + ": file data outside a file");
  file_got_ += data.size();
  if (file_got_ > file_size_)
    throw FormatError(Origin() + ": more data than announced for '" + file_path_ + "'");
  if (file_packed_) {
    if (!pack_.started()) cache_.BeginChunk(pack_);
    cache_.AppendChunkFile(pack_, data, Origin());
    return;
  }
  while (!data.empty()) {
    if (!chunk_.started()) cache_.BeginChunk(chunk_);
    size_t n = cutter_.Consume(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    cache_.AppendChunkFile(chunk_, data.substr(0, n), Origin());
    data.remove_prefix(n);
    if (cutter_.chunk_ended()) EndChunk();
  }
}

void PathWriterImpl::EndChunk() {
  const uint32_t size = uint32_t(chunk_.size());
  file_chunks_.push_back(ChunkRef{cache_.AdoptChunk(*this, chunk_), size});
}

void PathWriterImpl::EndRegular() {
  if (!in_file_) throw FormatError(Origin() + ": EndRegular outside a file");
  if (file_got_ != file_size_)
    throw FormatError(Origin() + ": file '" + file_path_ + "' has " + std::to_string(file_got_) +
                      " bytes, announced " + std::to_string(file_size_));
  in_file_ = false;
  if (file_packed_) {
    pack_files_.push_back(PackedFile{std::move(file_path_), file_exec_, uint32_t(file_size_),
                                     uint32_t(pack_.size() - file_size_)});
    return;
  }
  if (chunk_.started() && chunk_.size() > 0) EndChunk();  // the file's last chunk
  builder_.AddRegular(file_path_, file_exec_, file_size_, std::move(file_chunks_));
  file_chunks_.clear();
}

void PathWriterImpl::FlushPack() {
  if (pack_files_.empty()) return;
  ChunkId id = cache_.AdoptChunk(*this, pack_);
  for (PackedFile& f : pack_files_)
    builder_.AddRegular(f.path, f.executable, f.size, {ChunkRef{id, f.size, f.offset}});
  pack_files_.clear();
}

std::shared_ptr<CachedPath> PathWriterImpl::Commit() {
  if (committed_) throw Error(Origin() + ": Commit called twice");
  if (in_file_) throw FormatError(Origin() + ": Commit inside a file");
  FlushPack();
  auto cp = cache_.CommitPath(*this);
  committed_ = true;
  return cp;
}

PathWriterImpl::~PathWriterImpl() {
  if (!committed_) cache_.AbortWriter(*this);
}

void StoreCacheImpl::EnsureSubdir(uint8_t first_byte) {
  {
    std::lock_guard lock(mu_);
    if (subdir_made_[first_byte]) return;
  }
  ChunkId id;
  id.bytes[0] = first_byte;
  std::string sub = ChunkDir(id);
  if (::mkdir(sub.c_str(), 0755) == 0) {
    struct stat st;
    std::lock_guard lock(mu_);
    if (!subdir_made_[first_byte] && ::stat(sub.c_str(), &st) == 0) fixed_disk_ += DiskBytes(st);
    subdir_made_[first_byte] = true;
  } else if (errno == EEXIST) {
    std::lock_guard lock(mu_);
    subdir_made_[first_byte] = true;
  } else {
    ThrowSys("creating " + sub);
  }
}

void StoreCacheImpl::BeginChunk(ChunkFile& f) {
  f.Discard();
  f.hash_.Reset();
  f.started_ = true;
}

void StoreCacheImpl::WriteGathered(ChunkFile& f, const std::string& origin) {
  if (f.fd_.get() < 0) {
    // Unnamed (O_TMPFILE): nothing to clean up after a crash, no rename, no contention on one
    // directory's lock. Created in the 256 chunk directories in turn (the chunk's name, hence
    // its final directory, is not known yet when a chunk outgrows the gather buffer), so that
    // ext4 spreads the new inodes as it spreads those directories instead of allocating them
    // all from one group, where it scans past recently deleted inodes (docs/cache.md). File
    // systems without O_TMPFILE get a named file in DIR/tmp.
    if (use_tmpfile_) {
      const uint8_t sub = uint8_t(tmp_counter_.fetch_add(1));
      EnsureSubdir(sub);
      ChunkId where;
      where.bytes[0] = sub;
      f.fd_ = UniqueFd(::open(ChunkDir(where).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0444));
      if (f.fd_.get() < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        ThrowSys("creating a chunk file in " + ChunkDir(where) + " for " + origin);
    }
    if (f.fd_.get() < 0) {
      f.tmp_ = TmpName("chunk");
      f.fd_ = CreateNew(f.tmp_, origin);
    }
  }
  if (f.pending_.empty()) return;
  WriteAll(f.fd_.get(), f.pending_, "a chunk file for " + origin);
  f.pending_.clear();
}

void StoreCacheImpl::AppendChunkFile(ChunkFile& f, std::string_view data,
                                     const std::string& origin) {
  f.hash_.Update(data);
  f.size_ += data.size();
  if (f.pending_.capacity() < gather_size_) {
    if (auto kept = gather_buffers_.Take()) f.pending_ = std::move(*kept);
    if (f.pending_.capacity() < gather_size_) f.pending_.reserve(gather_size_);
    f.buffers_ = &gather_buffers_;
  }
  // The gather buffer never grows past gather_size_ (growing it would touch fresh memory); no
  // chunk is larger, so bytes are written before the chunk ends only under unusual chunking
  // parameters.
  if (f.pending_.size() + data.size() > gather_size_) WriteGathered(f, origin);
  if (data.size() > gather_size_) {  // (the file exists: WriteGathered just made it)
    WriteAll(f.fd_.get(), data, "a chunk file for " + origin);
    return;
  }
  f.pending_.append(data);
}

ChunkId StoreCacheImpl::AdoptChunk(PathWriterImpl& w, ChunkFile& f) {
  const ChunkId id = f.hash_.Finish();
  const uint64_t size = f.size_;
  if (w.held_.count(id)) {  // the writer has this chunk already (a repeated file or piece)
    f.Discard();
    return id;
  }
  bool link;
  {
    std::lock_guard lock(mu_);
    auto [it, inserted] = chunks_.try_emplace(id);
    ChunkEntry& e = it->second;
    if (inserted) {
      e.size = uint32_t(size);
      unique_bytes_ += e.size;
    }
    ++e.refs;
    w.held_.insert(id);  // released by AbortWriter if anything below fails
    link = !e.written;   // also when another writer is still writing it: links are idempotent
  }
  if (!link) {
    f.Discard();  // never written, if it fitted in the gather buffer
    return id;
  }
  WriteGathered(f, w.Origin());
  f.ReturnBuffer();
  EnsureSubdir(id.bytes[0]);
  const std::string final_path = ChunkPath(id);
  struct stat st;
  if (::fstat(f.fd_.get(), &st) != 0) ThrowSys("stat of a chunk file for " + w.Origin());
  const uint64_t disk = DiskBytes(st);
  {
    std::lock_guard lock(mu_);
    if (f.tmp_.empty()) {
      std::string self = "/proc/self/fd/" + std::to_string(f.fd_.get());
      // EEXIST: a concurrent writer of the same chunk linked its complete copy first.
      if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, final_path.c_str(), AT_SYMLINK_FOLLOW) != 0 &&
          errno != EEXIST)
        ThrowSys("linking chunk " + final_path + " for " + w.Origin());
    } else {
      if (::rename(f.tmp_.c_str(), final_path.c_str()) != 0)
        ThrowSys("renaming " + f.tmp_ + " to " + final_path);
      f.tmp_.clear();
    }
    ChunkEntry& e = chunks_[id];  // exists: this writer holds a reference
    if (!e.written) {
      e.written = true;
      e.disk = disk;
      chunk_disk_ += disk;
    }
  }
  f.Discard();
  // This process just hashed these bytes and wrote them: the first read need not re-hash them
  // (verification guards against damage from earlier runs: crashes, bit rot, tampering).
  MarkVerified(id);
  return id;
}

void StoreCacheImpl::DeleteChunkFileLocked(const ChunkId& id, ChunkEntry& e) {
  if (e.written) {
    std::string p = ChunkPath(id);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT)
      Log("cannot remove chunk " + p + ": " + Errno(errno) + " (collected at next start)");
    chunk_disk_ -= e.disk;
    e.written = false;
    e.durable = false;
    e.disk = 0;
  }
  ForgetChunk(id);
}

void StoreCacheImpl::ReleaseChunksLocked(const std::unordered_set<ChunkId, ChunkIdHash>& ids) {
  for (const ChunkId& id : ids) {
    auto it = chunks_.find(id);
    if (it == chunks_.end()) continue;
    if (--it->second.refs == 0) {
      DeleteChunkFileLocked(id, it->second);
      unique_bytes_ -= it->second.size;
      chunks_.erase(it);
    }
  }
}

void StoreCacheImpl::AbortWriter(PathWriterImpl& w) {
  std::lock_guard lock(mu_);
  ReleaseChunksLocked(w.held_);
  w.held_.clear();
}

std::shared_ptr<CachedPath> StoreCacheImpl::CommitPath(PathWriterImpl& w) {
  auto meta = w.builder_.Build();
  std::string hash(w.info_.store_path.hash_part());
  uint64_t id = IdFor(w.info_.store_path);
  // Every chunk the path references must exist; those not durable yet are synced by the
  // durability worker before the metadata reaches paths/ (data before metadata).
  std::vector<ChunkId> not_durable;
  {
    std::lock_guard lock(mu_);
    for (const ChunkId& c : w.held_) {
      auto it = chunks_.find(c);
      if (it == chunks_.end() || !it->second.written)
        throw Error(w.Origin() + ": chunk " + c.ToHex() +
                    " was not written (a concurrent writer failed or it was found corrupt); "
                    "fetch the path again");
      if (!it->second.durable) not_durable.push_back(c);
    }
  }
  std::string data = EncodePathFile(id, w.info_, *meta);
  std::string tmp = TmpName(hash + ".meta");
  const uint64_t disk = FillNewFile(CreateNew(tmp, w.Origin()).get(), data, tmp);
  auto cp = std::make_shared<CachedPath>(id, w.info_.store_path, w.info_, meta);
  {
    std::lock_guard lock(mu_);
    if (!opt_.sync && ::rename(tmp.c_str(), MetaPath(hash).c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      ThrowSys("committing " + w.Origin() + " (rename to " + MetaPath(hash) + ")", err);
    }
    auto it = paths_.find(hash);
    if (it != paths_.end()) {
      // Re-fetched while cached (two fetches raced): the new copy (same NarHash, so the same
      // contents) replaces the old one; holders of the old CachedPath keep reading it. Not an
      // eviction: the listener is not called.
      PathEntry old = std::move(it->second);
      paths_.erase(it);
      if (!old.pending_meta.empty()) {
        ::unlink(old.pending_meta.c_str());
      } else if (opt_.sync) {
        ::unlink(MetaPath(hash).c_str());  // the new metadata takes its place when durable
      }
      meta_disk_ -= old.meta_disk;
      logical_bytes_ -= old.cp->meta->content_bytes();
      std::unordered_set<ChunkId, ChunkIdHash> old_chunks;
      for (const ChunkRef& c : old.cp->meta->all_chunks()) old_chunks.insert(c.id);
      ReleaseChunksLocked(old_chunks);
    }
    PathEntry e{.cp = cp,
                .last_used = ++clock_,
                .meta_disk = disk,
                .touched_sec = int64_t(::time(nullptr)),
                .pending_meta = opt_.sync ? tmp : std::string()};
    meta_disk_ += disk;
    logical_bytes_ += meta->content_bytes();
    paths_.emplace(hash, std::move(e));
    w.held_.clear();  // the references now belong to the path
  }
  if (opt_.sync) {
    // Visible now (served from the chunk files in the page cache); durable shortly after.
    {
      std::lock_guard lock(durable_mu_);
      durable_queue_.push_back(
          PendingPath{hash, w.info_.store_path.base_name(), tmp, std::move(not_durable)});
      ++durable_queued_;
    }
    durable_cv_.notify_one();
  }
  ListingChanged();
  MaybeEvict(hash);
  return cp;
}

void StoreCacheImpl::SyncChunks(const std::vector<ChunkId>& chunks,
                                const std::vector<std::string>& extra_files) {
  if (chunks.size() + extra_files.size() <= kSyncEachChunkLimit) {
    // Start write-back of every file first, then wait for each: the file system allocates all
    // of them in one journal transaction, so the first fdatasync commits it and the others find
    // their data and metadata already on disk (one commit, not one per file).
    std::vector<std::pair<UniqueFd, std::string>> files;
    files.reserve(chunks.size() + extra_files.size() + 1);
    std::unordered_set<std::string> dirs;
    auto add = [&](std::string p) {
      UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd.get() < 0) {
        if (errno == ENOENT) return false;  // removed meanwhile (evicted, replaced)
        ThrowSys("fsync " + p);
      }
      ::sync_file_range(fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);  // a hint: errors come below
      files.emplace_back(std::move(fd), std::move(p));
      return true;
    };
    for (const ChunkId& c : chunks) {
      if (add(ChunkPath(c))) dirs.insert(ChunkDir(c));
    }
    for (const std::string& p : extra_files) add(p);
    for (const auto& [fd, p] : files) {
      if (::fdatasync(fd.get()) != 0) ThrowSys("fsync " + p);
    }
    for (const auto& d : dirs) FsyncPath(d);
    if (::fdatasync(ids_fd_.get()) != 0) ThrowSys("fdatasync " + dir_ + "/ids");
  } else if (::syncfs(dir_fd_.get()) != 0) {
    ThrowSys("syncfs " + dir_);
  }
  std::lock_guard lock(mu_);
  for (const ChunkId& c : chunks) {
    auto it = chunks_.find(c);
    if (it != chunks_.end() && it->second.written) it->second.durable = true;
  }
}

void StoreCacheImpl::DurabilityLoop() {
  for (;;) {
    std::vector<PendingPath> batch;
    {
      std::unique_lock lock(durable_mu_);
      durable_cv_.wait(lock, [&] { return durable_stop_ || !durable_queue_.empty(); });
      if (durable_queue_.empty()) return;  // stopping, and nothing left to do
      // Let the burst of commits this one belongs to (a closure being fetched) finish first:
      // one sync for all of it, and no write-back competing with the fetches for the disk.
      durable_cv_.wait_for(lock, std::chrono::duration<double>(opt_.durable_delay_s),
                           [&] { return durable_stop_ || durable_hurry_ > 0; });
      batch.assign(std::make_move_iterator(durable_queue_.begin()),
                   std::make_move_iterator(durable_queue_.end()));
      durable_queue_.clear();
    }
    MakeDurable(batch);
    {
      std::lock_guard lock(durable_mu_);
      durable_done_ += batch.size();
    }
    durable_done_cv_.notify_all();
  }
}

void StoreCacheImpl::MakeDurable(std::vector<PendingPath>& batch) {
  std::vector<ChunkId> chunks;
  std::vector<std::string> metas;
  for (const PendingPath& p : batch) {
    chunks.insert(chunks.end(), p.chunks.begin(), p.chunks.end());
    metas.push_back(p.tmp);
  }
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  std::string failure;
  try {
    SyncChunks(chunks, metas);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  bool renamed = false;
  {
    std::lock_guard lock(mu_);
    for (const PendingPath& p : batch) {
      auto it = paths_.find(p.hash);
      bool current = it != paths_.end() && it->second.pending_meta == p.tmp;
      if (current && failure.empty() && ::rename(p.tmp.c_str(), MetaPath(p.hash).c_str()) == 0) {
        it->second.pending_meta.clear();
        renamed = true;
        continue;
      }
      if (current) {
        // Still served from memory (its chunks are in place); not kept across a restart.
        std::string why = failure.empty() ? "renaming " + p.tmp + ": " + Errno(errno) : failure;
        Log("store path " + p.base_name + " is cached for this run only: " + why +
            "; it will be fetched again after a restart");
        it->second.pending_meta.clear();
      }
      ::unlink(p.tmp.c_str());  // evicted or replaced meanwhile, or failed
    }
  }
  if (renamed) {
    try {
      FsyncPath(dir_ + "/paths");
    } catch (const std::exception& e) {
      Log(std::string(e.what()) + " (recently cached paths may be fetched again after a crash)");
    }
  }
}

void StoreCacheImpl::WaitDurable() {
  std::unique_lock lock(durable_mu_);
  uint64_t target = durable_queued_;
  ++durable_hurry_;
  durable_cv_.notify_all();
  durable_done_cv_.wait(lock, [&] { return durable_done_ >= target; });
  --durable_hurry_;
}

// ---------------------------------------------------------------------------------------------
// Eviction.

std::shared_ptr<CachedPath> StoreCacheImpl::DropLocked(const std::string& hash_part) {
  auto it = paths_.find(hash_part);
  if (it == paths_.end()) return nullptr;
  PathEntry e = std::move(it->second);
  paths_.erase(it);
  // Metadata first: once it is gone the path is gone; chunks left behind by a crash between the
  // two steps are orphans, collected at the next start.
  std::string p = e.pending_meta.empty() ? MetaPath(hash_part) : e.pending_meta;
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) Log("cannot remove " + p + ": " + Errno(errno));
  meta_disk_ -= e.meta_disk;
  logical_bytes_ -= e.cp->meta->content_bytes();
  std::unordered_set<ChunkId, ChunkIdHash> ids;
  for (const ChunkRef& c : e.cp->meta->all_chunks()) ids.insert(c.id);
  ReleaseChunksLocked(ids);
  return e.cp;
}

std::unordered_set<std::string> StoreCacheImpl::PinnedLocked() const {
  std::unordered_set<std::string> pinned;
  std::vector<std::string> todo;
  for (const auto& base : opt_.pins) {
    if (base.size() >= StorePath::kHashLength)
      todo.push_back(base.substr(0, StorePath::kHashLength));
  }
  while (!todo.empty()) {
    std::string h = std::move(todo.back());
    todo.pop_back();
    if (!pinned.insert(h).second) continue;
    auto it = paths_.find(h);
    if (it == paths_.end()) continue;
    for (const StorePath& r : it->second.cp->info.references) todo.emplace_back(r.hash_part());
  }
  return pinned;
}

void StoreCacheImpl::EvictTo(uint64_t target, std::string_view exclude) {
  std::vector<std::shared_ptr<CachedPath>> evicted, probed;
  uint64_t usage_after;
  double probe_interval;
  {
    std::lock_guard lock(listener_mu_);
    probe_interval = probe_ ? probe_interval_s_ : -1;
  }
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  {
    std::lock_guard lock(mu_);
    uint64_t avail = UINT64_MAX;
    if (opt_.min_free_bytes) {
      struct statvfs vfs;
      if (::statvfs(dir_.c_str(), &vfs) == 0) avail = uint64_t(vfs.f_bavail) * vfs.f_frsize;
    }
    uint64_t freed = 0;
    uint64_t probing = 0;  // content bytes of probed paths: counted as if freed
    auto need = [&] {
      uint64_t usage = UsageLocked();
      usage = usage > probing ? usage - probing : 0;
      return usage > target ||
             (avail != UINT64_MAX && avail + freed + probing < opt_.min_free_bytes);
    };
    if (need()) {
      auto pinned = PinnedLocked();
      std::vector<std::pair<uint64_t, std::string>> candidates;
      for (const auto& [h, e] : paths_) {
        if (h == exclude || pinned.count(h) || e.cp.use_count() > 1 || e.cp->open_files > 0)
          continue;
        candidates.emplace_back(e.last_used, h);
      }
      std::sort(candidates.begin(), candidates.end());
      auto evict = [&](const std::string& h) {
        uint64_t before = UsageLocked();
        auto cp = DropLocked(h);
        freed += before - UsageLocked();
        ++evictions_;
        evicted.push_back(std::move(cp));
      };
      // Least recently used first; paths the guard says are in use are probed, not evicted.
      std::vector<std::string> in_use;
      size_t i = 0;
      for (; i < candidates.size() && need(); ++i) {
        const std::string& h = candidates[i].second;
        PathEntry& e = paths_.at(h);
        if (in_use_ && in_use_(e.cp->id)) {
          if (probe_interval >= 0 && now - e.probed_at >= probe_interval) {
            e.probed_at = now;
            probing += e.cp->meta->content_bytes();
            probed.push_back(e.cp);
          }
          in_use.push_back(h);
          continue;
        }
        evict(h);
      }
      // Below the free-space floor the guard gives way: the other paths go first, then those
      // in use (their readers fetch them again). A full disk would fail every fetch.
      auto below_floor = [&] { return avail != UINT64_MAX && avail + freed < opt_.min_free_bytes; };
      for (; i < candidates.size() && below_floor(); ++i) {
        const std::string& h = candidates[i].second;
        if (in_use_ && in_use_(paths_.at(h).cp->id)) {
          in_use.push_back(h);
        } else {
          evict(h);
        }
      }
      for (size_t k = 0; k < in_use.size() && below_floor(); ++k) evict(in_use[k]);
      std::erase_if(probed, [&](const std::shared_ptr<CachedPath>& cp) {
        return !paths_.count(std::string(cp->path.hash_part()));  // evicted after all
      });
    }
    usage_after = UsageLocked();
  }
  if (opt_.max_bytes && usage_after > opt_.max_bytes && probed.empty()) {
    Log("cache " + dir_ + " is over its budget (" + std::to_string(usage_after) + " > " +
        std::to_string(opt_.max_bytes) +
        " bytes): the remaining paths are in use, pinned or just added" +
        (exclude.empty() ? std::string() : " (store path " + std::string(exclude) + "...)"));
  }
  std::function<void(const CachedPath&)> listener, probe;
  {
    std::lock_guard lock(listener_mu_);
    listener = listener_;
    probe = probe_;
  }
  if (listener)
    for (const auto& cp : evicted) listener(*cp);
  if (!evicted.empty()) ListingChanged();
  if (probe)
    for (const auto& cp : probed) probe(*cp);
}

void StoreCacheImpl::MaybeEvict(std::string_view just_committed) {
  bool over;
  {
    std::lock_guard lock(mu_);
    over = opt_.max_bytes && UsageLocked() > uint64_t(opt_.high_watermark * double(opt_.max_bytes));
  }
  if (!over && opt_.min_free_bytes) {
    struct statvfs vfs;
    over = ::statvfs(dir_.c_str(), &vfs) == 0 &&
           uint64_t(vfs.f_bavail) * vfs.f_frsize < opt_.min_free_bytes;
  }
  if (!over) return;
  uint64_t target =
      opt_.max_bytes ? uint64_t(opt_.low_watermark * double(opt_.max_bytes)) : UINT64_MAX;
  EvictTo(target, just_committed);
}

void StoreCacheImpl::Evict(std::optional<uint64_t> target_bytes) {
  uint64_t target = target_bytes     ? *target_bytes
                    : opt_.max_bytes ? uint64_t(opt_.low_watermark * double(opt_.max_bytes))
                                     : UINT64_MAX;
  EvictTo(target, {});
}

// ---------------------------------------------------------------------------------------------
// Reading.

std::shared_ptr<OpenChunk> StoreCacheImpl::GetChunkFd(const ChunkId& id, bool* verified) {
  Shard& s = ShardOf(id);
  uint64_t forgotten;
  {
    std::lock_guard lock(s.mu);
    *verified = s.verified.count(id) > 0;
    auto it = s.open.find(id);
    if (it != s.open.end()) return it->second;
    forgotten = s.forgotten;
  }
  auto oc = std::make_shared<OpenChunk>();
  oc->fd = UniqueFd(::open(ChunkPath(id).c_str(), O_RDONLY | O_CLOEXEC));
  if (oc->fd.get() < 0) return nullptr;
  std::lock_guard lock(s.mu);
  if (s.forgotten != forgotten) {
    // A damaged chunk was dropped meanwhile: this descriptor may be of its file, and "verified"
    // may now be about a fresh copy. Used once, unverified, and not kept.
    *verified = false;
    return oc;
  }
  auto [it, inserted] = s.open.emplace(id, oc);
  if (!inserted) return it->second;
  s.order.push_back(id);
  size_t cap = std::max<size_t>(1, fd_cap_ / kShards);
  while (s.open.size() > cap && !s.order.empty()) {
    s.open.erase(s.order.front());  // readers still using it keep their shared_ptr
    s.order.pop_front();
  }
  return oc;
}

void StoreCacheImpl::MarkVerified(const ChunkId& id) {
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  s.verified.insert(id);
}

void StoreCacheImpl::ForgetChunk(const ChunkId& id) {
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  ++s.forgotten;
  s.verified.erase(id);
  if (s.open.erase(id)) {
    auto it = std::find(s.order.begin(), s.order.end(), id);
    if (it != s.order.end()) s.order.erase(it);
  }
}

std::string StoreCacheImpl::FilePath(const CachedPath& path, uint32_t node) const {
  std::string rel;
  const PathMeta& m = *path.meta;
  for (uint32_t n = node; n != 0; n = m.node(n).parent) rel = "/" + std::string(m.name(n)) + rel;
  return path.path.FullPath() + rel;
}

void StoreCacheImpl::Corrupt(const CachedPath& path, uint32_t node, const ChunkRef& chunk, int fd,
                             const std::string& why) {
  std::string hash(path.path.hash_part());
  bool dropped = false;
  {
    std::lock_guard lock(mu_);  // writers link chunk files under it: the check below holds
    struct stat now, was;
    const bool present = ::stat(ChunkPath(chunk.id).c_str(), &now) == 0;
    // (A descriptor that cannot even be stat'ed counts as the chunk's file: it is dropped.)
    const bool same =
        !present || (fd >= 0 && (::fstat(fd, &was) != 0 ||
                                 (was.st_ino == now.st_ino && was.st_dev == now.st_dev)));
    if (!same) {
      std::string msg = "cached file " + FilePath(path, node) + ": chunk " + chunk.id.ToHex() +
                        " " + why + " in a copy replaced meanwhile; read it again";
      Log(msg);
      throw IntegrityError(msg);
    }
    auto cit = chunks_.find(chunk.id);
    if (cit != chunks_.end()) DeleteChunkFileLocked(chunk.id, cit->second);
    auto it = paths_.find(hash);
    if (it != paths_.end() && it->second.cp.get() == &path) {
      DropLocked(hash);
      dropped = true;
    }
  }
  ForgetChunk(chunk.id);
  if (dropped) {
    ++refetches_;
    ListingChanged();
  }
  std::string msg = "cached file " + FilePath(path, node) + ": chunk " + chunk.id.ToHex() + " " +
                    why + "; store path " + path.path.base_name() +
                    " dropped from the cache, fetch it again";
  Log(msg);
  throw IntegrityError(msg);
}

const PathMeta& StoreCacheImpl::RegularFile(const CachedPath& path, uint32_t node,
                                            const char* caller) const {
  const PathMeta& m = *path.meta;
  if (node >= m.node_count() || m.node(node).type != PathMeta::Type::kRegular)
    throw Error(std::string(caller) + ": node " + std::to_string(node) + " of " +
                path.path.base_name() + " is not a regular file");
  return m;
}

std::shared_ptr<OpenChunk> StoreCacheImpl::OpenChunkOf(const CachedPath& path, uint32_t node,
                                                       const ChunkRef& c, bool* verified) {
  auto oc = GetChunkFd(c.id, verified);
  if (!oc) {
    int err = errno;
    if (err == ENOENT) Corrupt(path, node, c, -1, "is missing");
    // Out of descriptors or memory: not the data's fault, keep the path.
    throw Error("cached file " + FilePath(path, node) + ": cannot open chunk " + ChunkPath(c.id) +
                ": " + Errno(err));
  }
  return oc;
}

std::optional<std::vector<StoreCache::Extent>> StoreCacheImpl::Extents(const CachedPath& path,
                                                                       uint32_t node,
                                                                       uint64_t offset, size_t size,
                                                                       size_t max_extents) {
  const PathMeta& m = RegularFile(path, node, "Extents");
  if (opt_.verify_always) return std::nullopt;
  std::vector<Extent> out;
  uint64_t file_size = m.node(node).size;
  if (offset >= file_size || size == 0) return out;
  size_t n = size_t(std::min<uint64_t>(size, file_size - offset));
  auto chunks = m.chunks(node);
  auto offs = m.chunk_offsets(node);
  size_t done = 0;
  for (size_t i = m.ChunkAt(node, offset); done < n; ++i) {
    if (out.size() == max_extents) return std::nullopt;
    const ChunkRef& c = chunks[i];
    uint64_t in_chunk = offset + done - offs[i];
    size_t len = size_t(std::min<uint64_t>(c.size - in_chunk, n - done));
    bool verified;
    auto oc = OpenChunkOf(path, node, c, &verified);
    if (!verified) return std::nullopt;
    int fd = oc->fd.get();
    // A chunk file cut short since it was verified (damage from outside) would make a short
    // splice, which the kernel takes for the end of the file: Read() finds and reports it.
    struct stat st;
    if (::fstat(fd, &st) != 0 || uint64_t(st.st_size) < c.offset + in_chunk + len)
      return std::nullopt;
    out.push_back(
        Extent{.hold = std::move(oc), .fd = fd, .offset = c.offset + in_chunk, .size = len});
    done += len;
  }
  return out;
}

size_t StoreCacheImpl::Read(const CachedPath& path, uint32_t node, uint64_t offset,
                            std::span<char> out) {
  const PathMeta& m = RegularFile(path, node, "Read");
  uint64_t size = m.node(node).size;
  if (offset >= size || out.empty()) return 0;
  size_t n = size_t(std::min<uint64_t>(out.size(), size - offset));
  auto chunks = m.chunks(node);
  auto offs = m.chunk_offsets(node);
  size_t i = m.ChunkAt(node, offset);
  size_t done = 0;
  // Whole-chunk buffer for verification, reused by this thread (chunks are at most
  // chunking.max bytes, packs of small files too; no allocation or zero-filling per read).
  thread_local std::unique_ptr<char[]> vbuf;
  thread_local size_t vbuf_size = 0;
  while (done < n) {
    const ChunkRef& c = chunks[i];
    uint64_t in_chunk = offset + done - offs[i];
    size_t len = size_t(std::min<uint64_t>(c.size - in_chunk, n - done));
    bool verified;
    auto oc = OpenChunkOf(path, node, c, &verified);
    if (!verified || opt_.verify_always) {
      // The whole chunk is hashed (a pack of small files too: its id covers all of it).
      struct stat st;
      if (::fstat(oc->fd.get(), &st) != 0)
        Corrupt(path, node, c, oc->fd.get(), "cannot be read (" + Errno(errno) + ")");
      const uint64_t need = uint64_t(c.offset) + c.size;
      // No chunk is written larger than chunking.max (nor than the bytes referenced in it).
      const uint64_t limit = std::max<uint64_t>(need, opt_.chunking.max);
      if (uint64_t(st.st_size) < need || uint64_t(st.st_size) > limit)
        Corrupt(path, node, c, oc->fd.get(),
                "has " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(need) +
                    " to " + std::to_string(limit));
      const size_t want = size_t(st.st_size) + 1;  // one more: a file that grew is detected
      if (vbuf_size < want) {
        vbuf = std::make_unique<char[]>(want);
        vbuf_size = want;
      }
      char* const buf = vbuf.get();
      size_t got = 0;
      while (got < want) {
        ssize_t r = ::pread(oc->fd.get(), buf + got, want - got, off_t(got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) Corrupt(path, node, c, oc->fd.get(), "cannot be read (" + Errno(errno) + ")");
        if (r == 0) break;
        got += size_t(r);
      }
      if (got < need) Corrupt(path, node, c, oc->fd.get(), "is shorter than recorded");
      if (ChunkId::Of(std::string_view(buf, got)) != c.id)
        Corrupt(path, node, c, oc->fd.get(), "does not match its XXH3-128 hash");
      MarkVerified(c.id);
      std::memcpy(out.data() + done, buf + c.offset + in_chunk, len);
    } else {
      size_t got = 0;
      const uint64_t at = c.offset + in_chunk;
      while (got < len) {
        ssize_t r = ::pread(oc->fd.get(), out.data() + done + got, len - got, off_t(at + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) Corrupt(path, node, c, oc->fd.get(), "cannot be read (" + Errno(errno) + ")");
        if (r == 0) Corrupt(path, node, c, oc->fd.get(), "is shorter than recorded");
        got += size_t(r);
      }
    }
    done += len;
    ++i;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<StoreCache> StoreCache::Open(const CacheOptions& options) {
  return std::make_unique<StoreCacheImpl>(options, false, nullptr);
}

bool Fsck(const CacheOptions& options, const std::function<void(std::string_view)>& report) {
  StoreCacheImpl cache(options, true, report);
  return !cache.unrepaired();
}

}  // namespace nls
