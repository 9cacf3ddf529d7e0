// The local cache of verified store paths: a directory holding content-addressed chunks and one
// metadata file per store path, bounded by a byte budget with LRU eviction.
//
// Thread-safe: any number of readers while writers add paths. One process per directory (an
// flock on DIR/lock; a second Open throws ConfigError saying which process holds it).
//
// Visibility: a path becomes visible (Find returns it) only when PathWriter::Commit() succeeds,
// which the owner calls only after the NAR verified. Chunks are streamed into unnamed files and
// linked under their names when complete; metadata is written to a temporary name and renamed
// once its chunks are durable (in the background). After a crash, Open() removes temporaries
// and orphan chunks and never shows a path with incomplete data.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/chunker.h"
#include "cache/path_meta.h"
#include "fetch/nar_sink.h"
#include "fetch/narinfo.h"
#include "fetch/store_path.h"

namespace nls {

struct CacheOptions {
  std::string dir = "/var/cache/nix-lazy-store";
  uint64_t max_bytes = 0;         // disk usage budget as du counts it; 0 = unlimited
  uint64_t min_free_bytes = 0;    // keep at least this much free on the cache's file system
  double high_watermark = 0.95;   // eviction starts above high * max_bytes ...
  double low_watermark = 0.80;    // ... and goes down to low * max_bytes
  bool verify_always = false;     // re-hash every chunk on every read, not only on first read
  std::vector<std::string> pins;  // store path base names pinned with their closure
  // Durability (docs/cache.md "Crash safety"). A committed path is served at once; a background
  // worker then makes it durable in batches: its new chunks, its metadata file (still in tmp/)
  // and the ids file are fdatasync'd (or, for many files, the file system is syncfs'd), then the
  // metadata is renamed into paths/ and that directory fsync'd. A crash before that loses the
  // path (fetched again), never shows it with missing data. false: no syncs and no worker (the
  // metadata is renamed at commit): consistent after a process crash (SIGKILL), not after a
  // power loss. Tests only.
  bool sync = true;
  // The worker waits this long after a commit before syncing, so that a burst of commits (a
  // closure being fetched) is synced once, after the burst, instead of its write-back competing
  // with the fetches for the disk. A crash within the delay costs a re-fetch, nothing more.
  double durable_delay_s = 2;
  // Chunk files are written as unnamed files (O_TMPFILE) and linked when complete. false: as
  // named files in DIR/tmp, renamed when complete -- what file systems without O_TMPFILE (or a
  // process without /proc) get anyway. Tests only.
  bool unnamed_chunk_files = true;
  // Bound of the cache of open chunk file descriptors (also at most half of RLIMIT_NOFILE).
  size_t max_open_chunks = 4096;
  ChunkerParams chunking = ChunkerParams::Default();
};

struct CacheStats {
  uint64_t bytes_used = 0;  // disk usage (du) of chunks + metadata
  uint64_t paths = 0;
  uint64_t chunks = 0;
  uint64_t logical_bytes = 0;  // sum of file sizes over all cached paths
  uint64_t unique_bytes = 0;   // sum of distinct chunk sizes
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t refetches = 0;  // paths dropped because a chunk failed verification
  double dedup_ratio() const { return unique_bytes ? double(logical_bytes) / unique_bytes : 1.0; }
};

// A cached store path, kept alive (and not evictable while `open_files` > 0 or pinned) by
// shared ownership.
struct CachedPath {
  uint64_t id = 0;  // stable across restarts and re-fetches of the same hash part; never 0
  StorePath path;
  NarInfo info;
  std::shared_ptr<const PathMeta> meta;
  std::atomic<int64_t> open_files{0};  // the file system counts open handles here

  // For make_shared (clang 14 has no parenthesised aggregate initialisation).
  CachedPath(uint64_t id_, StorePath path_, NarInfo info_, std::shared_ptr<const PathMeta> meta_)
      : id(id_), path(std::move(path_)), info(std::move(info_)), meta(std::move(meta_)) {}
};

// Log lines (warnings: over-budget paths, dropped corrupt paths, crash recovery) go here; the
// default writes them to stderr. Not called under the cache's locks.
void SetCacheLogger(std::function<void(std::string_view)> logger);

// Receives a NAR's events, streaming file contents into chunk files as they arrive (no file's
// bytes are held in memory). Nothing is visible until Commit(). Destroying an uncommitted writer
// discards its work.
class PathWriter : public NarSink {
 public:
  // Makes the path visible atomically. Call only after the NAR verified.
  virtual std::shared_ptr<CachedPath> Commit() = 0;
};

class StoreCache {
 public:
  // Opens (creating if needed) the cache directory, takes the lock, recovers from crashes.
  static std::unique_ptr<StoreCache> Open(const CacheOptions& options);
  virtual ~StoreCache() = default;

  // The cached path with this hash part, or nullptr. Counts a hit or a miss; marks it used.
  virtual std::shared_ptr<CachedPath> Find(std::string_view hash_part) = 0;
  // Find again, for a caller whose Find just counted a miss for the same lookup: a hit still
  // counts (and marks the path used), a miss does not count twice.
  virtual std::shared_ptr<CachedPath> FindAgain(std::string_view hash_part) = 0;
  // Like Find, but by stable id (for inode numbers); does not count hits/misses.
  virtual std::shared_ptr<CachedPath> FindById(uint64_t id) = 0;
  // The id the path has or will have (assigned on first sight, persisted, never reused).
  virtual uint64_t IdFor(const StorePath& path) = 0;

  virtual std::vector<StorePath> List() = 0;

  virtual std::unique_ptr<PathWriter> BeginWrite(const NarInfo& info) = 0;

  // Reads up to out.size() bytes of regular file `node` at `offset`. Returns bytes read (short
  // only at end of file). A chunk that fails verification drops the path (counted in
  // refetches) and throws IntegrityError; the caller may fetch the path again.
  virtual size_t Read(const CachedPath& path, uint32_t node, uint64_t offset,
                      std::span<char> out) = 0;

  // A run of a regular file's bytes stored in one chunk file, for zero-copy replies (splice).
  struct Extent {
    std::shared_ptr<const void> hold;  // keeps `fd` open while the extent is in use
    int fd = -1;
    uint64_t offset = 0;  // in the chunk file
    size_t size = 0;
  };
  // The extents holding up to `size` bytes of regular file `node` from `offset`, in order (fewer
  // bytes only at end of file; none at or past it). Only chunks this process has verified (or
  // written) are handed out this way: std::nullopt when a chunk still needs verifying (or
  // verify_always is set), is shorter than its extent (damaged since it was verified), or more
  // than `max_extents` would be needed -- use Read() then.
  // Throws as Read does for a missing chunk.
  virtual std::optional<std::vector<Extent>> Extents(const CachedPath& path, uint32_t node,
                                                     uint64_t offset, size_t size,
                                                     size_t max_extents) = 0;

  // Runs eviction now, down to the low watermark (or to `target_bytes` if given).
  virtual void Evict(std::optional<uint64_t> target_bytes = std::nullopt) = 0;

  // Runs eviction as Commit does: only when usage is above the high watermark (or free space
  // below its floor). For periodic checks, when paths in use kept a commit's eviction short.
  virtual void EvictIfOver() = 0;

  // Called (outside locks) for each path evicted, so the file system can invalidate it.
  virtual void SetEvictionListener(std::function<void(const CachedPath&)> listener) = 0;

  // Called (outside the cache's locks, on the thread that made the change) after what List()
  // returns changed: a path was committed, evicted, or dropped because a chunk failed
  // verification. Each Commit calls it before the eviction that commit may start.
  virtual void SetListingListener(std::function<void()> listener) = 0;

  // What eviction asks before taking a path: `in_use(id)` (called under the cache's lock; it must
  // not call into the cache) says whether something outside the cache -- the kernel, through
  // the file system -- still references path `id`. Such a path is not evicted; instead
  // `probe(path)` is called for it (outside locks, at most once per `probe_interval_s` per path)
  // so that the referrer can let go of what it no longer uses, and a later eviction may take it.
  // Its content bytes count as if freed, so that one eviction does not probe the whole cache.
  // Below the free-space floor (min_free_bytes) the guard gives way: paths in use are evicted
  // too, after the others. nullptr functions: no guard.
  virtual void SetEvictionGuard(std::function<bool(uint64_t id)> in_use,
                                std::function<void(const CachedPath&)> probe,
                                double probe_interval_s = 30) = 0;

  virtual CacheStats Stats() = 0;

  // Disk usage as the budget counts it (same as Stats().bytes_used, cheaper).
  virtual uint64_t BytesUsed() = 0;

  // Blocks until every path committed before the call is durable (see CacheOptions::sync), or
  // was evicted or replaced meanwhile. The destructor does the same for all of them.
  virtual void WaitDurable() = 0;
};

// Re-hashes every chunk and checks every metadata file of the cache at options.dir, dropping
// paths with damage. Returns true if the cache is consistent afterwards (damage repaired or none
// found); false if damage remains that it could not repair. Writes a report line per problem to
// `report`.
bool Fsck(const CacheOptions& options, const std::function<void(std::string_view)>& report);

}  // namespace nls
