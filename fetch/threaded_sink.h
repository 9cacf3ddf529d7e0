// A NarSink that hands another sink's work to a thread of its own, so that parsing a NAR (the
// caller: download, decompression, NarHash) and consuming it (the inner sink: for the cache,
// chunking, hashing and writing files) run on two cores at once.
//
// Events reach the inner sink in the order they were made. File data is copied into batches of
// up to `batch_bytes`; at most `max_buffered_bytes` of data wait at once (the caller blocks
// beyond that, so memory stays bounded whatever the download speed).
//
// Errors: the first exception the inner sink throws is rethrown (the same object) to the caller
// by the next event call or by Finish(); later events are dropped. The inner sink must outlive
// this object. Not thread-safe: one producer thread, as for any NarSink.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fetch/nar_sink.h"

namespace nls {

class ThreadedSink : public NarSink {
 public:
  // Data batches are at most `batch_bytes` (the NarSink contract: a few hundred KiB at most).
  explicit ThreadedSink(NarSink& inner, size_t batch_bytes = 256 << 10,
                        size_t max_buffered_bytes = 1 << 20);
  // Discards events not yet handled and waits for the thread (use Finish() to complete them).
  ~ThreadedSink() override;
  ThreadedSink(const ThreadedSink&) = delete;
  ThreadedSink& operator=(const ThreadedSink&) = delete;

  void CreateDirectory(std::string_view path) override;
  void BeginRegular(std::string_view path, bool executable, uint64_t size,
                    uint64_t contents_offset) override;
  void RegularData(std::string_view data) override;
  void EndRegular() override;
  void CreateSymlink(std::string_view path, std::string_view target) override;

  // Returns once the inner sink has handled every event; rethrows its first exception.
  void Finish();

 private:
  enum class Kind { kDirectory, kBeginRegular, kData, kEndRegular, kSymlink };
  struct Event {
    Kind kind;
    std::string text;    // path, or file data for kData
    std::string target;  // symlink target
    bool executable = false;
    uint64_t size = 0, contents_offset = 0;
  };

  void FlushData();        // queues the pending data batch, if any
  void Push(Event event);  // blocks while too much data waits; rethrows the inner error
  void ThrowIfFailed();    // mu_ held
  void Run();

  NarSink& inner_;
  const size_t batch_bytes_, max_buffered_bytes_;
  std::string pending_;  // data not queued yet (producer side only)

  std::mutex mu_;
  std::condition_variable work_cv_;   // events queued, or stopping
  std::condition_variable space_cv_;  // data handled, queue drained, or failed
  std::deque<Event> queue_;
  std::vector<std::string> spare_;  // handled data batches, reused (no allocation per batch)
  size_t queued_bytes_ = 0;
  bool busy_ = false;  // the thread is handling an event
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace nls
