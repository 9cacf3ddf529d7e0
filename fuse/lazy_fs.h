// The FUSE low-level file system serving a lazy /nix/store.
//
// Root (inode 1): lookup of a name that is not a valid store path base name fails with ENOENT
// at once; a cached path is served; any other is fetched through LazyStore (blocking only that
// request). ENOENT replies in the root are not cached by the kernel, so a path pushed later
// appears once the fetcher's negative TTL has passed. Fetch failures give EIO (logged by
// LazyStore). readdir of the root lists the paths in the local cache; the kernel caches that
// listing too (no OPENDIR), so each change gives the root a new mtime and drops the kernel's
// root attributes (ListingChanged), and the kernel reads the listing again.
// Inside store paths everything is immutable: entries, attributes, negative entries and page
// cache are kept by the kernel for a year (entry/attr timeouts, keep_cache, cache_readdir,
// FUSE_CAP_CACHE_SYMLINKS).
//
// Lookup counts: the kernel's references are counted per store path (the sum over its inodes);
// while non-zero, the file system keeps the path's metadata (not its CachedPath: holding that
// would make it unevictable) so lookups/getattr/readdir inside it never need the cache.
// Eviction: the cache's listener queues the evicted path; an invalidation thread then tells the
// kernel to drop the root entry and the path's root inode, so the next use fetches it again.
// A path the kernel references (lookup count > 0: an open or mapped file, a working directory,
// or just cached entries) is not evicted: the cache's eviction guard asks the kernel to drop
// its root entry instead (a "probe"), the kernel FORGETs what no process uses, and a later
// eviction (200 ms later, at the next commit, or at the invalidation thread's check every 30 s
// while the cache is over its high watermark) takes it; a path in use is looked up again,
// which makes it recently used. A read of an inode whose path was evicted anyway fetches it
// again (same id, same inode numbers).
// Opens: the kernel is told to skip OPEN/RELEASE (FUSE_CAP_NO_OPEN_SUPPORT); only where it
// cannot are open files counted in CachedPath::open_files, which eviction skips too. Likewise
// OPENDIR/RELEASEDIR (FUSE_CAP_NO_OPENDIR_SUPPORT).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cache/lazy_store.h"
#include "cache/store_cache.h"
#include "fetch/fetcher.h"
#include "fuse/figures.h"

struct fuse_session;
struct fuse_lowlevel_ops;

namespace nls {

struct LazyFsOptions {
  double entry_timeout_s = 365.0 * 24 * 3600;  // store contents never change
  double negative_root_timeout_s = 0;          // ENOENT in the root is not cached
  // Answer reads of verified chunks by splicing from the chunk files (FUSE_CAP_SPLICE_WRITE):
  // one copy fewer than pread + write (docs/architecture.md, "Reads").
  bool splice_reads = true;
};

class LazyFs {
 public:
  LazyFs(StoreCache& cache, Fetcher& fetcher, LazyStore& lazy, LazyFsOptions options = {});
  ~LazyFs();  // StopInvalidator()
  LazyFs(const LazyFs&) = delete;
  LazyFs& operator=(const LazyFs&) = delete;

  // The operation table; userdata for fuse_session_new must be this object.
  static const fuse_lowlevel_ops& Ops();

  // Starts the thread that sends kernel invalidations for evicted paths (needs the mounted
  // session) and registers the cache's eviction listener.
  void StartInvalidator(fuse_session* session);
  void StopInvalidator();

  // True once the kernel's INIT was answered (the session is live).
  bool initialized() const { return initialized_; }

  // The largest read the kernel sends (bytes): 1 MiB, or less where a pipe cannot hold a
  // spliced reply of 1 MiB (fuse/read_size.h). The mount's readahead should be this size.
  size_t read_size() const { return read_size_; }

  // Everything status/xattrs/metrics show.
  std::vector<Figure> Figures();

  // Counters of the file system itself.
  struct Counters {
    std::atomic<uint64_t> lookups{0};
    std::atomic<uint64_t> root_lookups{0};
    std::atomic<uint64_t> io_errors{0};  // EIO replies
    std::atomic<uint64_t> reads{0};
    std::atomic<uint64_t> read_bytes{0};
    std::atomic<uint64_t> read_bytes_spliced{0};  // of read_bytes: handed over as chunk fds
    std::atomic<uint64_t> open_files{0};
    // OPENs received (with FUSE_CAP_NO_OPEN_SUPPORT the first, answered ENOSYS, ends them).
    std::atomic<uint64_t> open_requests{0};
    // OPENDIRs received (likewise, with FUSE_CAP_NO_OPENDIR_SUPPORT).
    std::atomic<uint64_t> opendir_requests{0};
    std::atomic<uint64_t> invalidations{0};
    std::atomic<uint64_t> eviction_probes{0};  // root entries dropped so eviction may proceed
  };
  Counters& counters() { return counters_; }

  // --- operation implementations (public for the C trampolines) ---
  struct Impl;

 private:
  friend struct Impl;
  // What the file system remembers of a store path the kernel references.
  struct PathRef {
    uint64_t id = 0;
    StorePath path;
    std::shared_ptr<const PathMeta> meta;
    Hash nar_hash;  // the contents the kernel was told about (inode numbers depend on them)

    static std::shared_ptr<const PathRef> Of(const CachedPath& p) {
      return std::make_shared<const PathRef>(PathRef{p.id, p.path, p.meta, p.info.nar_hash});
    }
  };
  struct PathEntry {
    std::shared_ptr<const PathRef> ref;
    uint64_t nlookup = 0;
  };

  // Records `n` kernel references to `path`; returns what is remembered of it.
  std::shared_ptr<const PathRef> Ref(const CachedPath& path, uint64_t n = 1);
  void Ref(const std::shared_ptr<const PathRef>& ref, uint64_t n = 1);
  void Forget(uint64_t ino, uint64_t n);
  // The path of a store path inode: the referenced one, else the cached one, else nullptr.
  std::shared_ptr<const PathRef> PathOf(uint64_t ino);
  // The cached path (its chunks readable now), fetched again if it was evicted; nullptr if no
  // substituter has it any more, or only with other contents (another NarHash: a substituter
  // built it differently), whose node numbers would not match the kernel's inodes.
  std::shared_ptr<CachedPath> LivePath(const PathRef& ref);
  // False if the kernel still holds inodes of `path`'s hash part with other contents (so
  // `path` cannot be given the same inode numbers until they are forgotten).
  bool AgreesWithKernel(const CachedPath& path);
  // The root's listing: the cached paths, in the order of their ids (stable offsets).
  struct RootListing;
  std::shared_ptr<const RootListing> CurrentRootListing();
  // The root's attributes: constant but for mtime (and ctime), the time its listing last
  // changed, or the mount's start.
  struct stat RootStat() const;
  // The cache's listing listener: a new root mtime and listing version, and where the kernel
  // caches the root's listing, its root attributes invalidated.
  void ListingChanged();
  struct Invalidation;
  // Tells the kernel about an evicted or probed path (invalidation thread, outside every lock).
  // Returns false for a probe it did not send. `probes_off`: set when a probe found no moment
  // without root lookups; later probes of the same batch are then dropped without waiting.
  bool SendInvalidation(const Invalidation& inv, bool& probes_off);
  bool KernelHolds(uint64_t id);  // the kernel has references to inodes of path `id`

  StoreCache& cache_;
  Fetcher& fetcher_;
  LazyStore& lazy_;
  const LazyFsOptions options_;
  const size_t read_size_;  // the largest read the kernel sends (fuse/read_size.h)
  Counters counters_;
  std::atomic<bool> initialized_{false};
  // Set in init (other threads may read them meanwhile: a pinned closure commits at start-up).
  std::atomic<bool> no_open_{false};          // the kernel agreed to FUSE_CAP_NO_OPEN_SUPPORT
  std::atomic<bool> no_opendir_{false};       // ... and to FUSE_CAP_NO_OPENDIR_SUPPORT
  std::atomic<bool> splice_{false};           // reads may be answered by splicing
  std::atomic<int> root_lookups_running_{0};  // LOOKUPs in the root being answered now

  std::mutex mu_;
  std::unordered_map<uint64_t, PathEntry> paths_;
  // Root listing.
  std::atomic<int64_t> root_mtime_ns_;
  std::atomic<uint64_t> listing_version_{1};
  std::atomic<bool> root_listed_{false};  // a root listing was served since the last change
  std::mutex root_mu_;
  std::shared_ptr<const RootListing> root_listing_;  // the latest built, under root_mu_

  // Invalidation queue.
  std::mutex inval_mu_;
  std::condition_variable inval_cv_;
  struct Invalidation {
    std::string name;  // base name in the root
    uint64_t id = 0;
    bool probe = false;  // eviction wanted it while the kernel held it: drop the entry only
  };
  std::deque<Invalidation> inval_queue_;
  bool inval_stop_ = false;
  fuse_session* session_ = nullptr;
  std::thread invalidator_;
};

}  // namespace nls
