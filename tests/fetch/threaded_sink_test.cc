#include "fetch/threaded_sink.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "fetch/error.h"
#include "fetch/nar_parser.h"
#include "tests/fetch/nar_test_util.h"

namespace nls {
namespace {

using testing::RecordingSink;

// The same events, in the same order, whether or not a ThreadedSink sits in between; file data
// arrives complete even when the pieces are regrouped into batches.
TEST(ThreadedSinkTest, InnerSinkSeesTheSameEventsInOrder) {
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 7 + i / 1000);
  auto produce = [&](NarSink& s) {
    s.CreateDirectory("");
    s.CreateDirectory("bin");
    s.BeginRegular("bin/big", true, big.size(), 100);
    for (size_t i = 0; i < big.size(); i += 1000)
      s.RegularData(std::string_view(big).substr(i, 1000));
    s.EndRegular();
    s.BeginRegular("empty", false, 0, 2000000);
    s.EndRegular();
    s.CreateSymlink("link", "bin/big");
  };
  RecordingSink direct, via;
  produce(direct);
  {
    ThreadedSink threaded(via, 4096, 16384);
    produce(threaded);
    threaded.Finish();
  }
  EXPECT_EQ(via.events, direct.events);
  EXPECT_LE(via.max_piece, size_t(4096));
}

// An inner sink that fails on its nth call with an error of a given type.
class FailingSink : public NarSink {
 public:
  explicit FailingSink(int fail_at) : fail_at_(fail_at) {}
  void CreateDirectory(std::string_view) override { Call(); }
  void BeginRegular(std::string_view, bool, uint64_t, uint64_t) override { Call(); }
  void RegularData(std::string_view) override { Call(); }
  void EndRegular() override { Call(); }
  void CreateSymlink(std::string_view, std::string_view) override { Call(); }
  std::atomic<int> calls{0};

 private:
  void Call() {
    if (++calls == fail_at_) throw IntegrityError("disk says no");
  }
  int fail_at_;
};

TEST(ThreadedSinkTest, InnerErrorIsRethrownWithItsTypeAndStopsEvents) {
  FailingSink inner(2);
  ThreadedSink threaded(inner, 16, 64);
  bool caught = false;
  try {
    threaded.CreateDirectory("");
    threaded.BeginRegular("f", false, 1000, 0);  // the inner sink fails here
    for (int i = 0; i < 1000; ++i) threaded.RegularData("x");
    threaded.EndRegular();
    threaded.Finish();
  } catch (const IntegrityError& e) {
    caught = true;
    EXPECT_NE(std::string(e.what()).find("disk says no"), std::string::npos);
  }
  EXPECT_TRUE(caught);
  EXPECT_EQ(inner.calls.load(), 2);                     // nothing after the failure
  EXPECT_THROW(threaded.EndRegular(), IntegrityError);  // and it stays failed
}

// An inner sink that blocks until released, counting the data it got.
class GateSink : public NarSink {
 public:
  void CreateDirectory(std::string_view) override {}
  void BeginRegular(std::string_view, bool, uint64_t, uint64_t) override {}
  void RegularData(std::string_view d) override {
    while (!open) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    got += d.size();
  }
  void EndRegular() override {}
  void CreateSymlink(std::string_view, std::string_view) override {}
  std::atomic<bool> open{false};
  std::atomic<size_t> got{0};
};

TEST(ThreadedSinkTest, BufferedDataIsBoundedAndDestructionWithoutFinishReturns) {
  GateSink inner;
  std::atomic<size_t> produced{0};
  {
    ThreadedSink threaded(inner, 1024, 8192);
    std::thread producer([&] {
      threaded.BeginRegular("f", false, 1 << 20, 0);
      for (int i = 0; i < 1024; ++i) {
        threaded.RegularData(std::string(1024, 'a'));
        produced += 1024;
      }
      threaded.EndRegular();
      threaded.Finish();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // One batch in the inner sink, at most 8 KiB queued, one batch being filled.
    EXPECT_LE(produced.load(), size_t(1024 + 8192 + 1024));
    inner.open = true;
    producer.join();
    EXPECT_EQ(inner.got.load(), size_t(1 << 20));
  }
  GateSink stuck;
  stuck.open = true;
  {
    ThreadedSink threaded(stuck, 1024, 8192);
    threaded.BeginRegular("f", false, 1 << 20, 0);
    for (int i = 0; i < 100; ++i) threaded.RegularData(std::string(1024, 'a'));
  }  // destroyed mid-file: returns, the rest is discarded
  EXPECT_LE(stuck.got.load(), size_t(100 * 1024));
}

}  // namespace
}  // namespace nls
