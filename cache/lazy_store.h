// The glue between the local cache and the substituters: "give me the store path with this hash
// part", fetching, verifying and caching it when it is not cached yet.
//
//   Get(hash) -> StoreCache::Find -> (miss) Fetcher::Query -> StoreCache::BeginWrite ->
//   Fetcher::FetchNar(writer) -> PathWriter::Commit
//
// Single-flight: concurrent Get calls for the same hash part wait for one fetch. No lock is held
// while fetching, so requests for other paths proceed in parallel.
// Background prefetch: after a path is fetched, its references that are not cached are queued for
// a small pool of workers; those run only while few foreground fetches are in flight (foreground
// requests have priority) and share the single-flight table, so a foreground Get of a path being
// prefetched waits for that fetch instead of starting another.
// Errors: an absent path, or one without a trusted signature, is "not found" (Get returns
// nullptr; the fetcher remembers absence for its negative TTL so a path pushed later appears).
// Integrity, format and network failures are logged (path, substituter, cause) and rethrown;
// they are never remembered, so the next Get tries again.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cache/store_cache.h"
#include "fetch/fetcher.h"

namespace nls {

struct LazyStoreOptions {
  bool prefetch_references = true;
  int prefetch_workers = 2;
  // Background prefetches start only while fewer foreground fetches than this are running.
  int max_foreground_for_prefetch = 2;
  // The cache's byte budget (0 = unlimited). Prefetching stops while the cache uses more than
  // half of it, and a path is prefetched at most once per process, so a small cache never
  // thrashes between the prefetcher and eviction.
  uint64_t cache_budget_bytes = 0;
  // The prefetcher skips paths whose NAR is larger than this: prefetching pays off for chains
  // of small libraries (latency), while a large path fetched speculatively competes with
  // foreground fetches for bandwidth and CPU. Large paths are fetched when used.
  uint64_t prefetch_max_nar_bytes = 8 << 20;
  // NARs at least this large are written to the cache by a second thread (ThreadedSink) while
  // the fetching thread parses and verifies, when at most half the CPUs (at least one) are
  // busy with such large fetches; smaller ones are not worth a thread.
  uint64_t threaded_write_min_nar_bytes = 4 << 20;
  // How many large fetches at once may have a writer thread; 0: half the CPUs (at least one).
  int threaded_write_slots = 0;
};

struct LazyStoreStats {
  uint64_t fetched = 0;            // paths fetched and committed (foreground + prefetch)
  uint64_t prefetched = 0;         // of which by the background prefetcher
  uint64_t prefetch_skipped = 0;   // references not prefetched because their NAR is large
  uint64_t not_found = 0;          // Get calls answered "absent" (or unsigned)
  uint64_t errors = 0;             // fetches that failed (integrity, format, network)
  uint64_t coalesced = 0;          // Get calls served by another caller's fetch
  uint64_t in_flight = 0;          // fetches running now
  uint64_t prefetch_queued = 0;    // paths waiting for the prefetcher
  uint64_t fetched_nar_bytes = 0;  // NarSize of fetched paths
  uint64_t threaded_writes = 0;    // fetches whose NAR a second thread wrote to the cache
};

// Summary of FetchClosure.
struct ClosureProgress {
  uint64_t done = 0;     // paths finished (cached, fetched or failed)
  uint64_t known = 0;    // paths discovered so far
  uint64_t fetched = 0;  // of which downloaded now
  uint64_t already_cached = 0;
  uint64_t failed = 0;     // absent or error
  uint64_t nar_bytes = 0;  // NarSize of the fetched ones
};

class LazyStore {
 public:
  // `cache` and `fetcher` must outlive this object.
  LazyStore(StoreCache& cache, Fetcher& fetcher, LazyStoreOptions options = {});
  ~LazyStore();  // Shutdown()
  LazyStore(const LazyStore&) = delete;
  LazyStore& operator=(const LazyStore&) = delete;

  // The cached store path with this hash part, fetching it if needed; nullptr if no substituter
  // has it (or it is not signed by a trusted key when signatures are required). Throws the
  // fetcher's IntegrityError / FormatError / TransientError / CancelledError otherwise.
  std::shared_ptr<CachedPath> Get(std::string_view hash_part);

  // Queues a background fetch of this hash part (and, when enabled, its references).
  void Prefetch(std::string_view hash_part);

  // Fetches the closures of `hash_parts` with `jobs` parallel fetches, calling `progress` (from
  // worker threads, serialised) after each path. Failures are logged and counted, not thrown.
  ClosureProgress FetchClosure(const std::vector<std::string>& hash_parts, int jobs,
                               const std::function<void(const ClosureProgress&)>& progress = {});

  // Stops the prefetch workers (queued work is dropped) and makes later Get calls throw
  // CancelledError. Does not cancel the fetcher; call Fetcher::Cancel() first for that.
  void Shutdown();

  LazyStoreStats Stats();

 private:
  struct Flight {
    bool done = false;
    bool skipped = false;  // a prefetch declined the path: waiters must fetch it themselves
    std::shared_ptr<CachedPath> result;
    std::exception_ptr error;
    std::condition_variable cv;
  };

  std::shared_ptr<CachedPath> GetImpl(std::string_view hash_part, bool foreground);
  std::shared_ptr<CachedPath> FetchOne(const std::string& hash_part, bool foreground);
  void QueueReferences(const CachedPath& path);
  void PrefetchWorker();

  StoreCache& cache_;
  Fetcher& fetcher_;
  const LazyStoreOptions options_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Flight>, std::less<>> flights_;
  std::condition_variable prefetch_cv_;
  std::deque<std::string> prefetch_queue_;
  std::set<std::string, std::less<>> prefetch_queued_;
  std::set<std::string, std::less<>> prefetch_tried_;  // never prefetched twice
  int foreground_fetches_ = 0;
  std::atomic<int> large_writes_{0};  // fetches of NARs >= threaded_write_min_nar_bytes now
  const int threaded_write_slots_;    // options_.threaded_write_slots, or max(1, CPUs / 2)
  bool shutdown_ = false;
  LazyStoreStats stats_;
  std::vector<std::thread> workers_;
};

}  // namespace nls
