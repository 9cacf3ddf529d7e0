#include "cache/lazy_store.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "fetch/error.h"
#include "fetch/log.h"
#include "fetch/threaded_sink.h"

namespace nls {
namespace {

// Thrown (and caught in GetImpl) when the prefetcher declines a path.
struct PrefetchSkipped {};

}  // namespace

LazyStore::LazyStore(StoreCache& cache, Fetcher& fetcher, LazyStoreOptions options)
    : cache_(cache),
      fetcher_(fetcher),
      options_(options),
      threaded_write_slots_(options.threaded_write_slots > 0
                                ? options.threaded_write_slots
                                : std::max(1, int(std::thread::hardware_concurrency() / 2))) {
  for (int i = 0; i < options_.prefetch_workers; ++i) {
    workers_.emplace_back([this] { PrefetchWorker(); });
  }
}

LazyStore::~LazyStore() { Shutdown(); }

void LazyStore::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    prefetch_queue_.clear();
    prefetch_queued_.clear();
  }
  prefetch_cv_.notify_all();
  for (auto& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

LazyStoreStats LazyStore::Stats() {
  std::lock_guard lock(mu_);
  LazyStoreStats s = stats_;
  s.prefetch_queued = prefetch_queue_.size();
  return s;
}

std::shared_ptr<CachedPath> LazyStore::Get(std::string_view hash_part) {
  return GetImpl(hash_part, /*foreground=*/true);
}

std::shared_ptr<CachedPath> LazyStore::GetImpl(std::string_view hash_part, bool foreground) {
  if (auto cached = cache_.Find(hash_part)) return cached;

  std::shared_ptr<Flight> flight;
  {
    std::unique_lock lock(mu_);
    while (true) {
      if (shutdown_) {
        throw CancelledError("fetching " + Quoted(hash_part) + ": nix-lazy-store is shutting down");
      }
      auto it = flights_.find(hash_part);
      if (it == flights_.end()) break;
      auto other = it->second;
      ++stats_.coalesced;
      other->cv.wait(lock, [&] { return other->done; });
      if (other->skipped) continue;  // declined by the prefetcher: fetch it here
      if (other->error) std::rethrow_exception(other->error);
      return other->result;
    }
    flight = std::make_shared<Flight>();
    flights_.emplace(std::string(hash_part), flight);
    ++stats_.in_flight;
    if (foreground) ++foreground_fetches_;
  }

  std::shared_ptr<CachedPath> result;
  std::exception_ptr error;
  bool skipped = false;
  // Another flight may have committed this path and ended between the Find above and ours
  // starting: then it is served from the cache, not downloaded again.
  bool was_cached = false;
  try {
    result = cache_.FindAgain(hash_part);
    was_cached = result != nullptr;
    if (!was_cached) result = FetchOne(std::string(hash_part), foreground);
  } catch (const PrefetchSkipped&) {
    skipped = true;
  } catch (...) {
    error = std::current_exception();
  }
  {
    std::lock_guard lock(mu_);
    flight->done = true;
    flight->skipped = skipped;
    flight->result = result;
    flight->error = error;
    flights_.erase(std::string(hash_part));
    --stats_.in_flight;
    if (foreground) --foreground_fetches_;
    if (was_cached) {
      ++stats_.coalesced;
    } else if (skipped) {
      ++stats_.prefetch_skipped;
    } else if (error) {
      ++stats_.errors;
    } else if (!result) {
      ++stats_.not_found;
    } else {
      ++stats_.fetched;
      if (!foreground) ++stats_.prefetched;
      stats_.fetched_nar_bytes += result->info.nar_size;
    }
  }
  flight->cv.notify_all();
  prefetch_cv_.notify_all();  // a foreground fetch finished: the prefetcher may go on
  if (error) std::rethrow_exception(error);
  if (result && !was_cached && options_.prefetch_references) QueueReferences(*result);
  return result;
}

std::shared_ptr<CachedPath> LazyStore::FetchOne(const std::string& hash_part, bool foreground) {
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<const PathInfo> info;
  try {
    info = fetcher_.Query(hash_part);
  } catch (const SignatureError& e) {
    NLS_LOG(kWarn) << "store path with hash " << hash_part
                   << " has no valid trusted signature, treating it as absent: " << e.what();
    return nullptr;
  } catch (const NotFoundError&) {
    return nullptr;
  } catch (const CancelledError&) {
    throw;
  } catch (const Error& e) {
    NLS_LOG(kError) << "looking up store path with hash " << hash_part << ": " << e.what();
    throw;
  }
  if (!info) {
    NLS_LOG(kDebug) << "store path with hash " << hash_part << " is in no substituter";
    return nullptr;
  }
  if (!foreground && info->info.nar_size > options_.prefetch_max_nar_bytes) {
    NLS_LOG(kDebug) << "not prefetching " << info->info.store_path.FullPath() << ": its NAR ("
                    << info->info.nar_size << " bytes) is larger than the prefetch limit";
    throw PrefetchSkipped();
  }
  const std::string full = info->info.store_path.FullPath();
  try {
    auto writer = cache_.BeginWrite(info->info);
    const bool large = info->info.nar_size >= options_.threaded_write_min_nar_bytes;
    struct Count {
      std::atomic<int>& n;
      int now;
      explicit Count(std::atomic<int>& c) : n(c), now(++c) {}
      ~Count() { --n; }
    };
    std::optional<Count> large_write;
    if (large) large_write.emplace(large_writes_);
    if (large && large_write->now <= threaded_write_slots_) {
      // Cores to spare for one large path: this thread downloads, decompresses and hashes the
      // NAR, another chunks and writes it (docs/benchmarks.md, "Filesystem"). With several
      // large fetches at once the cores are busy anyway, and the hand-over would only add a
      // copy.
      ThreadedSink threaded(*writer);
      fetcher_.FetchNar(*info, threaded);
      threaded.Finish();
      std::lock_guard lock(mu_);
      ++stats_.threaded_writes;
    } else {
      fetcher_.FetchNar(*info, *writer);
    }
    auto committed = writer->Commit();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    NLS_LOG(kInfo) << (foreground ? "fetched " : "prefetched ") << full << " ("
                   << info->info.nar_size << " NAR bytes) from " << info->substituter << " in "
                   << secs << " s";
    return committed;
  } catch (const SignatureError& e) {
    NLS_LOG(kWarn) << "fetching " << full << " from " << info->substituter
                   << ": not trusted, treating it as absent: " << e.what();
    return nullptr;
  } catch (const CancelledError&) {
    throw;
  } catch (const Error& e) {
    NLS_LOG(kError) << "fetching " << full << " from " << info->substituter
                    << " failed (not cached): " << e.what();
    // The substituter may be repaired (or the path re-pushed) with another narinfo: ask again.
    fetcher_.Invalidate(hash_part);
    throw;
  } catch (const std::exception& e) {
    NLS_LOG(kError) << "fetching " << full << " from " << info->substituter
                    << " failed (not cached): " << e.what();
    throw;
  }
}

void LazyStore::Prefetch(std::string_view hash_part) {
  {
    std::lock_guard lock(mu_);
    if (shutdown_ || prefetch_queued_.count(hash_part) || prefetch_tried_.count(hash_part) ||
        flights_.count(hash_part)) {
      return;
    }
    prefetch_queued_.emplace(hash_part);
    prefetch_queue_.emplace_back(hash_part);
  }
  prefetch_cv_.notify_one();
}

void LazyStore::QueueReferences(const CachedPath& path) {
  for (const StorePath& ref : path.info.references) {
    if (ref.hash_part() == path.path.hash_part()) continue;
    // FindById does not count hits or misses.
    if (cache_.FindById(cache_.IdFor(ref))) continue;
    Prefetch(ref.hash_part());
  }
}

void LazyStore::PrefetchWorker() {
  while (true) {
    std::string hash_part;
    {
      std::unique_lock lock(mu_);
      prefetch_cv_.wait(lock, [&] {
        return shutdown_ || (!prefetch_queue_.empty() &&
                             foreground_fetches_ < options_.max_foreground_for_prefetch);
      });
      if (shutdown_) return;
      hash_part = std::move(prefetch_queue_.front());
      prefetch_queue_.pop_front();
      prefetch_queued_.erase(hash_part);
      prefetch_tried_.insert(hash_part);
    }
    if (options_.cache_budget_bytes &&
        cache_.Stats().bytes_used > options_.cache_budget_bytes / 2) {
      NLS_LOG(kDebug) << "not prefetching " << hash_part << ": the cache is over half its budget";
      continue;
    }
    try {
      GetImpl(hash_part, /*foreground=*/false);
    } catch (const CancelledError&) {
      return;
    } catch (const std::exception& e) {
      NLS_LOG(kDebug) << "prefetch of " << hash_part << " failed: " << e.what();
    }
  }
}

ClosureProgress LazyStore::FetchClosure(
    const std::vector<std::string>& hash_parts, int jobs,
    const std::function<void(const ClosureProgress&)>& progress) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> todo;
  std::set<std::string> seen;
  ClosureProgress p;
  int busy = 0;
  for (const auto& h : hash_parts) {
    if (seen.insert(h).second) todo.push_back(h);
  }
  p.known = seen.size();

  auto worker = [&] {
    std::unique_lock lock(mu);
    while (true) {
      cv.wait(lock, [&] { return !todo.empty() || busy == 0; });
      if (todo.empty()) return;  // busy == 0: nothing more can appear
      std::string h = std::move(todo.front());
      todo.pop_front();
      ++busy;
      lock.unlock();
      bool was_cached = false;
      bool failed = false;
      std::shared_ptr<CachedPath> path;
      try {
        path = cache_.Find(h);
        was_cached = path != nullptr;
        if (!path) path = GetImpl(h, /*foreground=*/true);
        if (!path) {
          failed = true;
          NLS_LOG(kError) << "store path with hash " << h << " is in no substituter";
        }
      } catch (const std::exception& e) {
        failed = true;
        NLS_LOG(kError) << "prefetch of store path with hash " << h << " failed: " << e.what();
      }
      lock.lock();
      --busy;
      ++p.done;
      if (failed) {
        ++p.failed;
      } else if (was_cached) {
        ++p.already_cached;
      } else {
        ++p.fetched;
        p.nar_bytes += path->info.nar_size;
      }
      if (path) {
        for (const StorePath& ref : path->info.references) {
          std::string rh(ref.hash_part());
          if (seen.insert(rh).second) todo.push_back(std::move(rh));
        }
        p.known = seen.size();
      }
      if (progress) progress(p);
      cv.notify_all();
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, jobs); ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  return p;
}

}  // namespace nls
