// Fetcher over file:// caches written by the test, and the retry delay policy.
#include "fetch/fetcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <thread>

#include "fetch/error.h"
#include "fetch/log.h"
#include "fetch/substituter.h"
#include "tests/fetch/fetch_test_util.h"

namespace nls {
namespace {

using testing::RebuildSink;
using testing::TempDir;
using testing::TestCache;

NarTree SampleTree() {
  return NarTree::Directory({
      {"bin", NarTree::Directory({{"hello", NarTree::File("#!/bin/sh\necho hi\n", true)}})},
      {"lib", NarTree::Symlink("bin")},
      {"share", NarTree::Directory({{"big", NarTree::File(std::string(700000, 'x') + "end")}})},
  });
}

class FetcherTest : public ::testing::Test {
 protected:
  void SetUp() override { SetLogLevel(LogLevel::kError); }
  FetchOptions Options(std::vector<std::string> subs) {
    FetchOptions o;
    o.substituters = std::move(subs);
    o.trusted_keys.Add(key_.ToPublicKey());
    o.retry_base_delay_s = 0.01;
    return o;
  }
  TempDir tmp_;
  SecretKey key_ = SecretKey::Generate("test-key-1");
};

TEST(RetryDelayTest, DoublesWithJitterAndHonoursRetryAfter) {
  EXPECT_DOUBLE_EQ(RetryDelaySeconds(1, 0.1, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(RetryDelaySeconds(2, 0.1, 0.0), 0.2);
  EXPECT_DOUBLE_EQ(RetryDelaySeconds(4, 0.1, 0.0), 0.8);
  // Jitter multiplies by at most 2^0.5.
  EXPECT_NEAR(RetryDelaySeconds(1, 0.1, 1.0), 0.1 * std::sqrt(2.0), 1e-12);
  EXPECT_GT(RetryDelaySeconds(3, 0.1, 0.5), 0.4);
  EXPECT_LT(RetryDelaySeconds(3, 0.1, 0.5), 0.4 * std::sqrt(2.0));
  // Retry-After raises the delay, capped.
  EXPECT_DOUBLE_EQ(RetryDelaySeconds(1, 0.1, 0.0, 3.0, 10.0), 3.0);
  EXPECT_DOUBLE_EQ(RetryDelaySeconds(1, 0.1, 0.0, 3600.0, 10.0), 10.0);
  // A Retry-After shorter than our own backoff does not shorten it.
  EXPECT_DOUBLE_EQ(RetryDelaySeconds(5, 0.1, 0.0, 0.5, 10.0), 1.6);
}

TEST(SubstituterTest, ParsesUrls) {
  auto f = Substituter::Create("file:///srv/cache/", nullptr);
  EXPECT_EQ(f->url(), "file:///srv/cache");
  EXPECT_TRUE(f->is_file());
  EXPECT_EQ(f->Resolve("nar/x.nar.xz"), "file:///srv/cache/nar/x.nar.xz");
  EXPECT_EQ(f->Resolve("https://elsewhere/nar/y"), "https://elsewhere/nar/y");
  auto p = Substituter::Create("file:///srv/c?priority=7&trusted=1", nullptr);
  EXPECT_EQ(p->priority_override(), 7);
  EXPECT_EQ(p->url(), "file:///srv/c");
  EXPECT_THROW(Substituter::Create("ftp://x/", nullptr), ConfigError);
  EXPECT_THROW(Substituter::Create("file://relative", nullptr), ConfigError);
  EXPECT_THROW(Substituter::Create("file:///x?priority=abc", nullptr), ConfigError);
  EXPECT_THROW(Substituter::Create("/nix/store", nullptr), ConfigError);
}

TEST_F(FetcherTest, FetchesAndVerifiesFromFileCache) {
  for (std::string compression : {"none", "zstd"}) {
    TestCache cache(tmp_.path() + "/c-" + compression);
    NarInfo info = cache.Add("hello-" + compression, SampleTree(), &key_, compression);
    auto fetcher = Fetcher::Create(Options({cache.url()}));
    auto path = fetcher->Query(info.store_path.hash_part());
    ASSERT_NE(path, nullptr);
    EXPECT_EQ(path->info, info);
    EXPECT_EQ(path->substituter, cache.url());
    EXPECT_EQ(path->nar_url, cache.url() + "/" + info.url);
    RebuildSink sink;
    fetcher->FetchNar(*path, sink);
    EXPECT_EQ(sink.Nar(), WriteNar(SampleTree()));
    FetchStats st = fetcher->Stats();
    EXPECT_EQ(st.nar_downloads, 1u);
    EXPECT_EQ(st.bytes_downloaded, *info.file_size);
    EXPECT_EQ(st.errors, 0u);
    EXPECT_EQ(st.downloads_in_flight, 0u);
  }
}

TEST_F(FetcherTest, NoSubstitutersMeansNothingFound) {
  auto fetcher = Fetcher::Create(FetchOptions{});
  EXPECT_EQ(fetcher->Query(TestCache::HashPart("x")), nullptr);
  EXPECT_EQ(fetcher->Query("not-a-hash"), nullptr);
}

TEST_F(FetcherTest, NegativeResultsExpireAfterTtl) {
  TestCache cache(tmp_.path() + "/c");
  FetchOptions o = Options({cache.url()});
  o.negative_ttl_s = 1;  // long enough that Add below finishes within it on a loaded machine
  auto fetcher = Fetcher::Create(o);
  std::string hp = TestCache::HashPart("late");
  EXPECT_EQ(fetcher->Query(hp), nullptr);
  cache.Add("late", SampleTree(), &key_);
  EXPECT_EQ(fetcher->Query(hp), nullptr);  // remembered as absent
  EXPECT_EQ(fetcher->Stats().narinfo_requests, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_NE(fetcher->Query(hp), nullptr);
  EXPECT_EQ(fetcher->Stats().narinfo_requests, 2u);
  // Positive results stay cached.
  EXPECT_NE(fetcher->Query(hp), nullptr);
  EXPECT_EQ(fetcher->Stats().narinfo_requests, 2u);
}

TEST_F(FetcherTest, InvalidateForgetsBothKinds) {
  TestCache cache(tmp_.path() + "/c");
  auto fetcher = Fetcher::Create(Options({cache.url()}));
  std::string hp = TestCache::HashPart("late");
  EXPECT_EQ(fetcher->Query(hp), nullptr);
  cache.Add("late", SampleTree(), &key_);
  fetcher->Invalidate(hp);
  EXPECT_NE(fetcher->Query(hp), nullptr);
  std::filesystem::remove(cache.dir() + "/" + hp + ".narinfo");
  EXPECT_NE(fetcher->Query(hp), nullptr);  // positive results are kept
  fetcher->Invalidate(hp);
  EXPECT_EQ(fetcher->Query(hp), nullptr);
  EXPECT_EQ(fetcher->Stats().narinfo_requests, 3u);
}

TEST_F(FetcherTest, ZeroTtlDisablesNegativeCache) {
  TestCache cache(tmp_.path() + "/c");
  FetchOptions o = Options({cache.url()});
  o.negative_ttl_s = 0;
  auto fetcher = Fetcher::Create(o);
  std::string hp = TestCache::HashPart("late");
  EXPECT_EQ(fetcher->Query(hp), nullptr);
  cache.Add("late", SampleTree(), &key_);
  EXPECT_NE(fetcher->Query(hp), nullptr);
}

TEST_F(FetcherTest, LowerPriorityFirstStableForTies) {
  TestCache a(tmp_.path() + "/a", 40), b(tmp_.path() + "/b", 10), c(tmp_.path() + "/c", 10);
  NarInfo only_a = a.Add("only-a", SampleTree(), &key_);
  for (TestCache* x : {&a, &b, &c}) x->Add("everywhere", SampleTree(), &key_);
  std::string hp = TestCache::HashPart("everywhere");
  {
    auto f = Fetcher::Create(Options({a.url(), b.url(), c.url()}));
    EXPECT_EQ(f->Query(hp)->substituter, b.url());
    EXPECT_EQ(f->Query(only_a.store_path.hash_part())->substituter, a.url());
  }
  {
    auto f = Fetcher::Create(Options({a.url(), c.url(), b.url()}));
    EXPECT_EQ(f->Query(hp)->substituter, c.url());
  }
  {
    // ?priority= overrides nix-cache-info.
    auto f = Fetcher::Create(Options({a.url() + "?priority=1", b.url(), c.url()}));
    EXPECT_EQ(f->Query(hp)->substituter, a.url());
  }
}

TEST_F(FetcherTest, SignaturesRequiredByDefault) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo unsigned_info = cache.Add("unsigned", SampleTree(), nullptr);
  SecretKey other = SecretKey::Generate("other-key-1");
  NarInfo other_info = cache.Add("other", SampleTree(), &other);
  // Signed by our key name but over a different fingerprint (NarSize changed afterwards).
  NarInfo tampered = cache.Add("tampered", SampleTree(), nullptr);
  tampered.sigs = {key_.Sign(tampered.Fingerprint())};
  tampered.nar_size += 1;
  cache.WriteNarInfo(tampered, nullptr);
  {
    auto f = Fetcher::Create(Options({cache.url()}));
    EXPECT_EQ(f->Query(unsigned_info.store_path.hash_part()), nullptr);
    EXPECT_EQ(f->Query(other_info.store_path.hash_part()), nullptr);
    EXPECT_EQ(f->Query(tampered.store_path.hash_part()), nullptr);
    EXPECT_EQ(f->Stats().errors, 3u);
  }
  {
    FetchOptions o = Options({cache.url()});
    o.require_sigs = false;
    auto f = Fetcher::Create(o);
    EXPECT_NE(f->Query(unsigned_info.store_path.hash_part()), nullptr);
    EXPECT_NE(f->Query(other_info.store_path.hash_part()), nullptr);
  }
}

TEST_F(FetcherTest, NarInfoForAnotherHashIsIgnored) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("real", SampleTree(), &key_);
  std::string wrong = TestCache::HashPart("wrong");
  cache.WriteNarInfo(info, &key_, wrong);
  auto f = Fetcher::Create(Options({cache.url()}));
  EXPECT_EQ(f->Query(wrong), nullptr);
  EXPECT_NE(f->Query(info.store_path.hash_part()), nullptr);
}

TEST_F(FetcherTest, ForeignStoreDirDisablesSubstituter) {
  TestCache foreign(tmp_.path() + "/f", 1, "/gnu/store");
  TestCache good(tmp_.path() + "/g", 50);
  foreign.Add("p", SampleTree(), &key_);
  good.Add("p", SampleTree(), &key_);
  auto f = Fetcher::Create(Options({foreign.url(), good.url()}));
  auto path = f->Query(TestCache::HashPart("p"));
  ASSERT_NE(path, nullptr);
  EXPECT_EQ(path->substituter, good.url());
}

TEST_F(FetcherTest, MissingCacheInfoIsAcceptedForFileCaches) {
  TestCache cache(tmp_.path() + "/c", -1, "/nix/store", false);
  NarInfo info = cache.Add("p", SampleTree(), &key_);
  auto f = Fetcher::Create(Options({cache.url()}));
  EXPECT_NE(f->Query(info.store_path.hash_part()), nullptr);
}

TEST_F(FetcherTest, CorruptNarIsRejectedNamingPathAndSubstituter) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("corrupt", SampleTree(), &key_);
  ASSERT_TRUE(info.file_hash.has_value());
  std::string nar_file = cache.dir() + "/" + info.url;
  std::string data = testing::ReadFile(nar_file);
  data[data.size() / 2] ^= 1;  // inside the big file's contents: still a valid NAR
  testing::WriteFile(nar_file, data);
  // By default (as in Nix) the unsigned FileHash is not checked: the signed NarHash catches it.
  // With check_file_hash the FileHash mismatch is reported first.
  for (bool check_file_hash : {false, true}) {
    FetchOptions o = Options({cache.url()});
    o.check_file_hash = check_file_hash;
    auto f = Fetcher::Create(o);
    auto path = f->Query(info.store_path.hash_part());
    ASSERT_NE(path, nullptr);
    RebuildSink sink;
    try {
      f->FetchNar(*path, sink);
      FAIL() << "corrupt NAR accepted";
    } catch (const IntegrityError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(info.store_path.FullPath()), std::string::npos) << msg;
      EXPECT_NE(msg.find(cache.url()), std::string::npos) << msg;
      if (check_file_hash) {
        EXPECT_NE(msg.find("FileHash mismatch"), std::string::npos) << msg;
        EXPECT_NE(msg.find(info.file_hash->ToNixString()), std::string::npos) << msg;
      } else {
        EXPECT_NE(msg.find("NarHash mismatch"), std::string::npos) << msg;
      }
    }
  }
}

TEST_F(FetcherTest, NarHashMismatchIsRejectedWithBothHashes) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("wronghash", SampleTree(), nullptr);
  Hash actual = info.nar_hash;
  info.nar_hash = Hash::Of("something else");
  info.file_hash.reset();  // so only NarHash can catch it
  cache.WriteNarInfo(info, &key_);
  auto f = Fetcher::Create(Options({cache.url()}));
  auto path = f->Query(info.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  RebuildSink sink;
  try {
    f->FetchNar(*path, sink);
    FAIL() << "NAR with the wrong hash accepted";
  } catch (const IntegrityError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("NarHash mismatch"), std::string::npos) << msg;
    EXPECT_NE(msg.find(info.nar_hash.ToNixString()), std::string::npos) << msg;
    EXPECT_NE(msg.find(actual.ToNixString()), std::string::npos) << msg;
    EXPECT_NE(msg.find(info.store_path.FullPath()), std::string::npos) << msg;
    EXPECT_NE(msg.find(cache.url()), std::string::npos) << msg;
  }
}

TEST_F(FetcherTest, TruncatedNarFileIsRejected) {
  for (std::string compression : {"none", "zstd"}) {
    TestCache cache(tmp_.path() + "/t-" + compression);
    NarInfo info = cache.Add("short", SampleTree(), &key_, compression);
    std::string nar_file = cache.dir() + "/" + info.url;
    std::string data = testing::ReadFile(nar_file);
    testing::WriteFile(nar_file, data.substr(0, data.size() - 100));
    auto f = Fetcher::Create(Options({cache.url()}));
    auto path = f->Query(info.store_path.hash_part());
    ASSERT_NE(path, nullptr);
    RebuildSink sink;
    EXPECT_THROW(f->FetchNar(*path, sink), Error) << compression;
  }
}

TEST_F(FetcherTest, MissingNarFileIsNotFound) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("nonar", SampleTree(), &key_);
  std::filesystem::remove(cache.dir() + "/" + info.url);
  auto f = Fetcher::Create(Options({cache.url()}));
  auto path = f->Query(info.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  RebuildSink sink;
  EXPECT_THROW(f->FetchNar(*path, sink), NotFoundError);
}

TEST_F(FetcherTest, ConcurrentQueriesShareOneRequest) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("shared", SampleTree(), &key_);
  auto f = Fetcher::Create(Options({cache.url()}));
  std::vector<std::thread> threads;
  std::atomic<int> found{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (f->Query(info.store_path.hash_part())) ++found;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(found.load(), 8);
  EXPECT_EQ(f->Stats().narinfo_requests, 1u);
}

TEST_F(FetcherTest, CancelMakesLaterCallsThrow) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("p", SampleTree(), &key_);
  auto f = Fetcher::Create(Options({cache.url()}));
  auto path = f->Query(info.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  f->Cancel();
  EXPECT_THROW(f->Query(info.store_path.hash_part()), CancelledError);
  RebuildSink sink;
  EXPECT_THROW(f->FetchNar(*path, sink), CancelledError);
}

TEST_F(FetcherTest, UnknownCompressionIsAFormatError) {
  TestCache cache(tmp_.path() + "/c");
  NarInfo info = cache.Add("br", SampleTree(), nullptr);
  info.compression = "br";
  cache.WriteNarInfo(info, &key_);
  auto f = Fetcher::Create(Options({cache.url()}));
  auto path = f->Query(info.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  RebuildSink sink;
  EXPECT_THROW(f->FetchNar(*path, sink), FormatError);
}

}  // namespace
}  // namespace nls
