// HttpClient and the Fetcher over HTTP against tests/lib/fault_server.py on loopback: status
// classification, retries (500, 429 + Retry-After), resume after truncation (206 and servers that
// ignore Range), stalls, cancellation, the download concurrency bound, missing nix-cache-info.
#include "fetch/http_client.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <future>
#include <thread>

#include "fetch/error.h"
#include "fetch/fetcher.h"
#include "fetch/log.h"
#include "tests/fetch/fetch_test_util.h"

namespace nls {
namespace {

using testing::FaultServerProcess;
using testing::RebuildSink;
using testing::TempDir;
using testing::TestCache;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

NarTree BigTree() {
  std::string data;
  for (int i = 0; data.size() < 1500000; ++i) data += std::to_string(i * 7919) + ",";
  return NarTree::Directory({{"data", NarTree::File(data)}, {"x", NarTree::Symlink("data")}});
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogLevel(LogLevel::kError);
    cache_ = std::make_unique<TestCache>(tmp_.path() + "/cache", 30);
    info_ = cache_->Add("big", BigTree(), &key_, "zstd");
    plain_ = cache_->Add("plain", BigTree(), &key_, "none");
  }
  FetchOptions Options(std::string url) {
    FetchOptions o;
    o.substituters = {std::move(url)};
    o.trusted_keys.Add(key_.ToPublicKey());
    o.retry_base_delay_s = 0.02;
    o.failure_cooldown_s = 0;
    return o;
  }
  // Fetches `info` through a fault server with `faults`; returns the fetcher's stats.
  FetchStats FetchThrough(const std::string& faults, const NarInfo& info,
                          FetchOptions* opts = nullptr) {
    FaultServerProcess server(cache_->dir(), faults);
    FetchOptions o = opts ? *opts : Options(server.url());
    o.substituters = {server.url()};
    auto f = Fetcher::Create(o);
    auto path = f->Query(info.store_path.hash_part());
    EXPECT_NE(path, nullptr);
    if (!path) return {};
    RebuildSink sink;
    f->FetchNar(*path, sink);
    EXPECT_EQ(sink.Nar(), WriteNar(BigTree()));
    last_log_ = server.Log();
    return f->Stats();
  }
  TempDir tmp_;
  SecretKey key_ = SecretKey::Generate("test-key-1");
  std::unique_ptr<TestCache> cache_;
  NarInfo info_, plain_;
  std::string last_log_;
};

class CollectHandler : public BodyHandler {
 public:
  void OnStart(long status, std::optional<uint64_t> start) override {
    this->status = status;
    range_start = start;
  }
  void OnData(std::string_view d) override { body.append(d); }
  long status = 0;
  std::optional<uint64_t> range_start;
  std::string body;
};

TEST_F(HttpTest, ClassifiesStatuses) {
  FaultServerProcess server(cache_->dir(), R"([
      {"path": "^/gone$", "status": 410}, {"path": "^/forbidden$", "status": 403},
      {"path": "^/busy$", "status": 503}, {"path": "^/slow$", "status": 429, "retry_after": 7},
      {"path": "^/bad$", "status": 400}, {"path": "^/notimpl$", "status": 501}])");
  HttpClient client({});
  std::string body;
  EXPECT_EQ(client.GetSmall(server.url() + "/nix-cache-info", 1000, &body).status,
            TransferStatus::kOk);
  EXPECT_NE(body.find("StoreDir: /nix/store"), std::string::npos);
  EXPECT_EQ(client.GetSmall(server.url() + "/missing", 1000, &body).status,
            TransferStatus::kNotFound);
  EXPECT_EQ(client.GetSmall(server.url() + "/gone", 1000, &body).status, TransferStatus::kNotFound);
  EXPECT_EQ(client.GetSmall(server.url() + "/forbidden", 1000, &body).status,
            TransferStatus::kNotFound);
  TransferResult busy = client.GetSmall(server.url() + "/busy", 1000, &body);
  EXPECT_EQ(busy.status, TransferStatus::kTransient);
  EXPECT_NE(busy.error.find("HTTP 503"), std::string::npos) << busy.error;
  EXPECT_NE(busy.error.find(server.url() + "/busy"), std::string::npos) << busy.error;
  TransferResult slow = client.GetSmall(server.url() + "/slow", 1000, &body);
  EXPECT_EQ(slow.status, TransferStatus::kTransient);
  EXPECT_DOUBLE_EQ(slow.retry_after_s, 7);
  EXPECT_EQ(client.GetSmall(server.url() + "/bad", 1000, &body).status, TransferStatus::kFailed);
  EXPECT_EQ(client.GetSmall(server.url() + "/notimpl", 1000, &body).status,
            TransferStatus::kFailed);
  EXPECT_EQ(client.GetSmall(server.url() + "/" + plain_.url, 1000, &body).status,
            TransferStatus::kFailed);  // larger than max_size
}

TEST_F(HttpTest, RangeRequests) {
  FaultServerProcess server(cache_->dir());
  HttpClient client({});
  CollectHandler h;
  TransferResult r = client.Get(server.url() + "/nix-cache-info", 5, h);
  EXPECT_EQ(r.status, TransferStatus::kOk);
  EXPECT_EQ(h.status, 206);
  EXPECT_EQ(h.range_start, 5u);
  EXPECT_EQ(h.body, testing::ReadFile(cache_->dir() + "/nix-cache-info").substr(5));
}

TEST_F(HttpTest, ConnectionRefusedIsTransientAndNotCachedAsAbsent) {
  int port;
  {
    FaultServerProcess probe(cache_->dir());
    port = probe.port();
  }  // now closed: connections are refused
  std::string url = "http://127.0.0.1:" + std::to_string(port);
  HttpClient client({});
  std::string body;
  TransferResult r = client.GetSmall(url + "/nix-cache-info", 1000, &body);
  EXPECT_EQ(r.status, TransferStatus::kTransient);
  auto f = Fetcher::Create(Options(url));
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);  // not cached as absent
  EXPECT_GE(f->Stats().retries, 8u);
}

TEST_F(HttpTest, FailingSubstituterSitsOutTheCooldown) {
  int port;
  {
    FaultServerProcess probe(cache_->dir());
    port = probe.port();
  }
  std::string dead = "http://127.0.0.1:" + std::to_string(port) + "?priority=1";
  FetchOptions o = Options(dead);
  o.substituters = {dead, cache_->url()};
  o.failure_cooldown_s = 30;
  o.download_attempts = 3;
  auto f = Fetcher::Create(o);
  EXPECT_NE(f->Query(info_.store_path.hash_part()), nullptr);  // from the file cache
  uint64_t retries = f->Stats().retries;
  EXPECT_EQ(retries, 2u);  // nix-cache-info of the dead one: 3 attempts
  auto t = Clock::now();
  EXPECT_NE(f->Query(plain_.store_path.hash_part()), nullptr);
  EXPECT_EQ(f->Stats().retries, retries);  // not asked again during the cool-down
  EXPECT_LT(Since(t), 0.5);
  // A path nobody has: the unavailable substituter makes it a transient failure, not "absent".
  EXPECT_THROW(f->Query(TestCache::HashPart("nowhere")), TransientError);
}

TEST_F(HttpTest, CooldownGrowsWhileFailingAndStartsShortAgainAfterAnAnswer) {
  // nix-cache-info fails for two rounds of 3 attempts; plain_'s narinfo for one round.
  const std::string plain_hash(plain_.store_path.hash_part());
  FaultServerProcess server(cache_->dir(),
                            R"([{"path": "nix-cache-info", "status": 503, "times": 6},
      {"path": ")" + plain_hash +
                                R"(", "status": 503, "times": 3}])");
  FetchOptions o = Options(server.url());
  o.failure_cooldown_s = 30;
  o.download_attempts = 3;
  auto f = Fetcher::Create(o);
  auto requests = [&] { return nlohmann::json::parse(server.Log()).size(); };
  auto pause = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);
  EXPECT_EQ(requests(), 3u);  // (reading the log is not logged)
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);  // 1 s cool-down
  EXPECT_EQ(requests(), 3u);
  pause(1.2);
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);  // asked: fails again
  EXPECT_EQ(requests(), 6u);
  pause(1.2);
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);  // now a 2 s cool-down
  EXPECT_EQ(requests(), 6u);
  pause(1.0);
  EXPECT_NE(f->Query(info_.store_path.hash_part()), nullptr);  // answered
  // The answer reset the cool-down: the next failure skips the server for 1 s, not 4 s.
  EXPECT_THROW(f->Query(plain_.store_path.hash_part()), TransientError);
  pause(1.2);
  EXPECT_NE(f->Query(plain_.store_path.hash_part()), nullptr);
}

TEST_F(HttpTest, MissingCacheInfoDisablesHttpSubstituter) {
  FaultServerProcess server(cache_->dir(), R"([{"path": "nix-cache-info", "status": 404}])");
  auto f = Fetcher::Create(Options(server.url()));
  EXPECT_EQ(f->Query(info_.store_path.hash_part()), nullptr);
  EXPECT_EQ(f->Stats().narinfo_requests, 0u);
}

TEST_F(HttpTest, ServerErrorsAreRetried) {
  FetchStats st = FetchThrough(R"([{"path": "narinfo", "status": 500, "times": 2},
                                   {"path": "nar/", "status": 502, "times": 1}])",
                               info_);
  EXPECT_EQ(st.retries, 3u);
  EXPECT_EQ(st.errors, 0u);
}

TEST_F(HttpTest, TooManyRequestsHonoursRetryAfter) {
  auto t = Clock::now();
  FetchStats st = FetchThrough(R"([{"path": "narinfo", "status": 429, "retry_after": 1,
                                    "times": 1}])",
                               info_);
  EXPECT_GE(Since(t), 1.0);
  EXPECT_EQ(st.retries, 1u);
}

TEST_F(HttpTest, TruncatedBodyResumesWithRange) {
  for (const NarInfo* info : {&info_, &plain_}) {
    FetchStats st = FetchThrough(R"([{"path": "nar/", "truncate": 100000, "times": 2}])", *info);
    EXPECT_EQ(st.nar_resumes, 2u);
    EXPECT_EQ(st.bytes_downloaded, *info->file_size);
    EXPECT_NE(last_log_.find("\"range\": \"bytes=100000-\""), std::string::npos) << last_log_;
    EXPECT_NE(last_log_.find("\"range\": \"bytes=200000-\""), std::string::npos) << last_log_;
  }
}

TEST_F(HttpTest, ServerIgnoringRangeHasPrefixSkipped) {
  FetchStats st = FetchThrough(R"([{"path": "nar/", "truncate": 150000, "times": 1},
                                   {"path": "nar/", "ignore_range": true}])",
                               plain_);
  EXPECT_EQ(st.nar_resumes, 1u);
  EXPECT_EQ(st.bytes_downloaded, *plain_.file_size + 150000);
}

TEST_F(HttpTest, StalledTransferIsRetried) {
  FaultServerProcess server(cache_->dir(),
                            R"([{"path": "nar/", "stall": 50000, "stall_s": 8, "times": 1}])");
  FetchOptions o = Options(server.url());
  o.stalled_timeout_s = 1;
  auto f = Fetcher::Create(o);
  auto path = f->Query(info_.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  auto t = Clock::now();
  RebuildSink sink;
  f->FetchNar(*path, sink);
  EXPECT_LT(Since(t), 6.0);  // the stall lasts 8 s; the stalled timeout is 1 s
  EXPECT_EQ(sink.Nar(), WriteNar(BigTree()));
  EXPECT_EQ(f->Stats().nar_resumes, 1u);
}

TEST_F(HttpTest, FallsBackToAnotherSubstituterMidStream) {
  // The preferred server sends 100000 bytes of the zstd NAR, then only 503s. The other cache has
  // the same NAR uncompressed: the download continues there, skipping what the parser has.
  FaultServerProcess server(cache_->dir(), R"([{"path": "nar/", "truncate": 100000, "times": 1},
                                               {"path": "nar/", "status": 503}])");
  TestCache other(tmp_.path() + "/other", 90);
  other.Add("big", BigTree(), &key_, "none");
  FetchOptions o = Options(server.url());
  o.substituters = {other.url(), server.url()};  // the server has the better priority (30)
  o.download_attempts = 2;
  auto f = Fetcher::Create(o);
  auto path = f->Query(info_.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  EXPECT_EQ(path->substituter, server.url());
  RebuildSink sink;
  f->FetchNar(*path, sink);
  EXPECT_EQ(sink.Nar(), WriteNar(BigTree()));
  EXPECT_EQ(f->Stats().errors, 0u);
}

TEST_F(HttpTest, NoFallbackToADifferentNar) {
  FaultServerProcess server(cache_->dir(), R"([{"path": "nar/", "status": 503}])");
  TestCache other(tmp_.path() + "/other", 90);
  other.Add("big", NarTree::File("not the same"), &key_, "none");
  FetchOptions o = Options(server.url());
  o.substituters = {server.url(), other.url()};
  o.download_attempts = 2;
  auto f = Fetcher::Create(o);
  auto path = f->Query(info_.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  RebuildSink sink;
  EXPECT_THROW(f->FetchNar(*path, sink), TransientError);
}

TEST_F(HttpTest, GivesUpAfterAttemptsWithTransientError) {
  FaultServerProcess server(cache_->dir(), R"([{"path": "nar/", "status": 503}])");
  FetchOptions o = Options(server.url());
  o.download_attempts = 3;
  auto f = Fetcher::Create(o);
  auto path = f->Query(info_.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  RebuildSink sink;
  try {
    f->FetchNar(*path, sink);
    FAIL();
  } catch (const TransientError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(info_.store_path.FullPath()), std::string::npos) << msg;
    EXPECT_NE(msg.find(server.url()), std::string::npos) << msg;
    EXPECT_NE(msg.find("HTTP 503"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 attempt"), std::string::npos) << msg;
  }
  EXPECT_EQ(f->Stats().retries, 2u);
}

TEST_F(HttpTest, CancelAbortsAStalledDownloadPromptly) {
  FaultServerProcess server(cache_->dir(), R"([{"path": "nar/", "stall": 10000, "stall_s": 20}])");
  auto f = Fetcher::Create(Options(server.url()));
  auto path = f->Query(info_.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  auto fut = std::async(std::launch::async, [&] {
    RebuildSink sink;
    f->FetchNar(*path, sink);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto t = Clock::now();
  f->Cancel();
  EXPECT_THROW(fut.get(), CancelledError);
  EXPECT_LT(Since(t), 2.0);
  EXPECT_THROW(f->Query(plain_.store_path.hash_part()), CancelledError);
}

TEST_F(HttpTest, AtMostMaxParallelDownloads) {
  FaultServerProcess server(cache_->dir(), R"([{"path": "nar/", "delay_s": 0.3}])");
  FetchOptions o = Options(server.url());
  o.max_parallel_downloads = 2;
  auto f = Fetcher::Create(o);
  auto path = f->Query(info_.store_path.hash_part());
  ASSERT_NE(path, nullptr);
  std::atomic<bool> done{false};
  uint64_t max_seen = 0;
  std::thread watcher([&] {
    while (!done) {
      max_seen = std::max(max_seen, f->Stats().downloads_in_flight);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  auto t = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      RebuildSink sink;
      f->FetchNar(*path, sink);
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  watcher.join();
  EXPECT_EQ(max_seen, 2u);
  EXPECT_GE(Since(t), 0.9);  // three waves of 0.3 s
  EXPECT_EQ(f->Stats().nar_downloads, 6u);
}

}  // namespace
}  // namespace nls
