// LazyStore against a real StoreCache (temp directory) and a scripted Fetcher that feeds NAR
// events to the cache's writer: single-flight, error classification, reference prefetch.
#include "cache/lazy_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "fetch/error.h"

namespace nls {
namespace {

std::string Base(int i) {
  std::string h = "0000000000000000000000000000000";  // 31 chars
  h += "0123456789abcdfghijklmnpqrsvwxyz"[i % 32];
  return h + "-p" + std::to_string(i);
}

class ScriptedFetcher : public Fetcher {
 public:
  std::map<std::string, NarInfo> paths;         // by hash part
  std::map<std::string, std::string> failures;  // hash part -> "integrity" | "transient" | "sig"
  std::atomic<int> queries{0};
  std::atomic<int> fetches{0};
  std::atomic<int> delay_ms{0};
  std::atomic<int> rendezvous{0};  // FetchNar waits (up to 10 s) until this many have started
  std::vector<std::string> invalidated;

  std::shared_ptr<const PathInfo> Query(std::string_view hash_part) override {
    ++queries;
    auto f = failures.find(std::string(hash_part));
    if (f != failures.end() && f->second == "transient") throw TransientError("net down");
    auto it = paths.find(std::string(hash_part));
    if (it == paths.end()) return nullptr;
    auto info = std::make_shared<PathInfo>();
    info->info = it->second;
    info->substituter = "test://cache";
    info->nar_url = "test://cache/x.nar";
    return info;
  }
  void FetchNar(const PathInfo& path, NarSink& sink) override {
    ++fetches;
    for (int i = 0; i < 1000 && fetches < rendezvous; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    sink.CreateDirectory("");
    const std::string body = "contents of " + path.info.store_path.base_name();
    sink.BeginRegular("file", false, body.size(), 0);
    sink.RegularData(body);
    sink.EndRegular();
    auto f = failures.find(std::string(path.info.store_path.hash_part()));
    if (f != failures.end() && f->second == "integrity") throw IntegrityError("NarHash mismatch");
    if (f != failures.end() && f->second == "sig") throw SignatureError("unsigned");
  }
  void Invalidate(std::string_view hash_part) override { invalidated.emplace_back(hash_part); }
  void Cancel() override {}
  FetchStats Stats() override { return {}; }

  void Add(int i, std::vector<int> refs = {}, uint64_t nar_size = 100) {
    NarInfo info;
    info.store_path = StorePath::FromBaseName(Base(i));
    info.url = "nar/x.nar";
    info.compression = "none";
    info.nar_hash = Hash::Of(Base(i));
    info.nar_size = nar_size;
    for (int r : refs) info.references.push_back(StorePath::FromBaseName(Base(r)));
    paths[std::string(info.store_path.hash_part())] = info;
  }
};

class LazyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nls-lazy-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    CacheOptions o;
    o.dir = dir_ + "/cache";
    cache_ = StoreCache::Open(o);
  }
  void TearDown() override {
    cache_.reset();
    std::filesystem::remove_all(dir_);
  }
  static std::string Hash(int i) { return Base(i).substr(0, 32); }
  std::string dir_;
  std::unique_ptr<StoreCache> cache_;
  ScriptedFetcher fetcher_;
};

TEST_F(LazyStoreTest, FetchesOnceAndServesFromCache) {
  fetcher_.Add(1);
  LazyStore lazy(*cache_, fetcher_, {.prefetch_references = false});
  auto p = lazy.Get(Hash(1));
  ASSERT_TRUE(p);
  EXPECT_EQ(p->path.base_name(), Base(1));
  EXPECT_TRUE(lazy.Get(Hash(1)));
  EXPECT_EQ(fetcher_.fetches, 1);
  EXPECT_EQ(lazy.Stats().fetched, 1u);
  EXPECT_EQ(cache_->Stats().misses, 1u);  // one lookup missed, counted once
  EXPECT_EQ(cache_->Stats().hits, 1u);
}

TEST_F(LazyStoreTest, SingleFlight) {
  fetcher_.Add(1);
  fetcher_.delay_ms = 200;
  LazyStore lazy(*cache_, fetcher_, {.prefetch_references = false});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      if (lazy.Get(Hash(1))) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 16);
  EXPECT_EQ(fetcher_.fetches, 1);
  EXPECT_EQ(fetcher_.queries, 1);
  EXPECT_GE(lazy.Stats().coalesced, 1u);
}

TEST_F(LazyStoreTest, ErrorsAreClassifiedAndNotRemembered) {
  LazyStore lazy(*cache_, fetcher_, {.prefetch_references = false});
  EXPECT_EQ(lazy.Get(Hash(9)), nullptr);  // absent
  fetcher_.Add(2);
  fetcher_.failures[Hash(2)] = "integrity";
  EXPECT_THROW(lazy.Get(Hash(2)), IntegrityError);
  EXPECT_EQ(cache_->Find(Hash(2)), nullptr) << "nothing corrupt is kept";
  EXPECT_EQ(fetcher_.invalidated, std::vector<std::string>{Hash(2)})
      << "the fetcher forgets the narinfo of a failed fetch";
  fetcher_.failures[Hash(2)] = "transient";
  EXPECT_THROW(lazy.Get(Hash(2)), TransientError);
  fetcher_.failures[Hash(2)] = "sig";
  EXPECT_EQ(lazy.Get(Hash(2)), nullptr);  // untrusted counts as absent
  fetcher_.failures.erase(Hash(2));
  EXPECT_TRUE(lazy.Get(Hash(2))) << "failures are not remembered";
  LazyStoreStats s = lazy.Stats();
  EXPECT_EQ(s.errors, 2u);
  EXPECT_EQ(s.not_found, 2u);
}

// Large NARs are written by a second thread (ThreadedSink): the same results, and a NAR that
// fails verification after all its events leaves nothing behind.
TEST_F(LazyStoreTest, ThreadedWriteOfLargeNars) {
  fetcher_.Add(1);
  fetcher_.Add(2);
  fetcher_.failures[Hash(2)] = "integrity";
  LazyStore lazy(*cache_, fetcher_,
                 {.prefetch_references = false, .threaded_write_min_nar_bytes = 0});
  auto p = lazy.Get(Hash(1));
  ASSERT_TRUE(p);
  const std::string want = "contents of " + Base(1);
  std::string got(want.size() + 10, '\0');
  got.resize(cache_->Read(*p, p->meta->Lookup(0, "file").value(), 0, got));
  EXPECT_EQ(got, want);
  EXPECT_THROW(lazy.Get(Hash(2)), IntegrityError);
  EXPECT_EQ(cache_->Find(Hash(2)), nullptr);
  EXPECT_EQ(lazy.Stats().fetched, 1u);
  EXPECT_EQ(lazy.Stats().threaded_writes, 1u);  // the failed one is not counted
}

// Only `threaded_write_slots` large fetches at once get a writer thread (with more, the cores
// are busy anyway and the hand-over only adds a copy); small NARs never do.
TEST_F(LazyStoreTest, WriterThreadsOnlyForLargeNarsWhileSlotsAreFree) {
  for (int i = 1; i <= 4; ++i) fetcher_.Add(i, {}, 1000);
  fetcher_.Add(5, {}, 10);
  fetcher_.rendezvous = 3;  // the first three fetches overlap
  LazyStore lazy(*cache_, fetcher_,
                 {.prefetch_references = false,
                  .threaded_write_min_nar_bytes = 100,
                  .threaded_write_slots = 1});
  std::vector<std::thread> threads;
  for (int i = 1; i <= 3; ++i) threads.emplace_back([&lazy, i] { EXPECT_TRUE(lazy.Get(Hash(i))); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(lazy.Stats().threaded_writes, 1u) << "three at once, one slot";
  EXPECT_TRUE(lazy.Get(Hash(4)));
  EXPECT_EQ(lazy.Stats().threaded_writes, 2u) << "alone: the slot is free again";
  EXPECT_TRUE(lazy.Get(Hash(5)));
  EXPECT_EQ(lazy.Stats().threaded_writes, 2u) << "a small NAR is written by its fetching thread";
}

TEST_F(LazyStoreTest, PrefetchesReferences) {
  fetcher_.Add(1, {1, 2, 3, 5});
  fetcher_.Add(2, {4});
  fetcher_.Add(3);
  fetcher_.Add(4);
  fetcher_.Add(5, {}, 100 << 20);  // too large to prefetch
  LazyStore lazy(*cache_, fetcher_, {});
  ASSERT_TRUE(lazy.Get(Hash(1)));
  for (int i = 0;
       i < 200 && !(cache_->Find(Hash(2)) && cache_->Find(Hash(3)) && cache_->Find(Hash(4))); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(cache_->Find(Hash(2)));
  EXPECT_TRUE(cache_->Find(Hash(3)));
  EXPECT_TRUE(cache_->Find(Hash(4)));
  for (int i = 0; i < 200 && lazy.Stats().prefetch_skipped == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(lazy.Stats().prefetch_skipped, 1u);
  EXPECT_EQ(cache_->FindById(cache_->IdFor(StorePath::FromBaseName(Base(5)))), nullptr);
  EXPECT_EQ(fetcher_.fetches, 4);
  EXPECT_TRUE(lazy.Get(Hash(5))) << "a foreground request fetches a large path";
}

TEST_F(LazyStoreTest, ForegroundWaitingOnSkippedPrefetchFetchesItself) {
  fetcher_.Add(1, {}, 100 << 20);
  fetcher_.delay_ms = 100;
  LazyStore lazy(*cache_, fetcher_, {.prefetch_workers = 1});
  lazy.Prefetch(Hash(1));
  EXPECT_TRUE(lazy.Get(Hash(1)));
}

TEST_F(LazyStoreTest, FetchClosure) {
  fetcher_.Add(1, {2, 3});
  fetcher_.Add(2, {3});
  fetcher_.Add(3, {7});  // 7 is absent
  LazyStore lazy(*cache_, fetcher_, {.prefetch_references = false, .prefetch_workers = 0});
  ClosureProgress p = lazy.FetchClosure({Hash(1)}, 3);
  EXPECT_EQ(p.known, 4u);
  EXPECT_EQ(p.fetched, 3u);
  EXPECT_EQ(p.failed, 1u);
  p = lazy.FetchClosure({Hash(1)}, 3);
  EXPECT_EQ(p.already_cached, 3u);
  EXPECT_EQ(fetcher_.fetches, 3);
}

}  // namespace
}  // namespace nls
