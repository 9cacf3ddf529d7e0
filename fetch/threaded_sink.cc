#include "fetch/threaded_sink.h"

#include <utility>

#include "fetch/free_list.h"

namespace nls {

namespace {

// Data batches outlive their sink here and serve the next one (fetch/free_list.h: touching
// fresh memory for every large download costs page faults). 6 x 256 KiB: one sink's worth.
FreeList<std::string>& KeptBatches() {
  static FreeList<std::string> kept(6);
  return kept;
}

}  // namespace

ThreadedSink::ThreadedSink(NarSink& inner, size_t batch_bytes, size_t max_buffered_bytes)
    : inner_(inner),
      batch_bytes_(batch_bytes ? batch_bytes : 1),
      max_buffered_bytes_(max_buffered_bytes > batch_bytes ? max_buffered_bytes : batch_bytes) {
  thread_ = std::thread([this] { Run(); });
}

ThreadedSink::~ThreadedSink() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    queue_.clear();
    queued_bytes_ = 0;
  }
  work_cv_.notify_all();
  thread_.join();
  for (std::string& batch : spare_) {
    if (batch.capacity() == batch_bytes_) KeptBatches().Give(std::move(batch));
  }
}

void ThreadedSink::CreateDirectory(std::string_view path) {
  Push(Event{.kind = Kind::kDirectory, .text = std::string(path), .target = {}});
}

void ThreadedSink::BeginRegular(std::string_view path, bool executable, uint64_t size,
                                uint64_t contents_offset) {
  Push(Event{.kind = Kind::kBeginRegular,
             .text = std::string(path),
             .target = {},
             .executable = executable,
             .size = size,
             .contents_offset = contents_offset});
}

void ThreadedSink::RegularData(std::string_view data) {
  while (!data.empty()) {
    if (pending_.capacity() < batch_bytes_) {
      std::lock_guard lock(mu_);
      if (!spare_.empty()) {
        pending_ = std::move(spare_.back());
        spare_.pop_back();
        pending_.clear();
      }
    }
    if (pending_.capacity() < batch_bytes_) {
      if (auto kept = KeptBatches().Take()) {
        pending_ = std::move(*kept);
        pending_.clear();
      }
    }
    if (pending_.capacity() < batch_bytes_) pending_.reserve(batch_bytes_);
    size_t n = std::min(data.size(), batch_bytes_ - pending_.size());
    pending_.append(data.substr(0, n));
    data.remove_prefix(n);
    if (pending_.size() >= batch_bytes_) FlushData();
  }
}

void ThreadedSink::EndRegular() {
  Push(Event{.kind = Kind::kEndRegular, .text = {}, .target = {}});
}

void ThreadedSink::CreateSymlink(std::string_view path, std::string_view target) {
  Push(Event{.kind = Kind::kSymlink, .text = std::string(path), .target = std::string(target)});
}

void ThreadedSink::Finish() {
  FlushData();
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] { return error_ || (queue_.empty() && !busy_); });
  ThrowIfFailed();
}

void ThreadedSink::FlushData() {
  if (pending_.empty()) return;
  Event e{.kind = Kind::kData, .text = std::move(pending_), .target = {}};
  pending_ = std::string();
  Push(std::move(e));
}

void ThreadedSink::ThrowIfFailed() {
  if (error_) std::rethrow_exception(error_);
}

void ThreadedSink::Push(Event event) {
  if (event.kind != Kind::kData) FlushData();
  {
    std::unique_lock lock(mu_);
    ThrowIfFailed();
    if (event.kind == Kind::kData) {
      // Wait for room; a single batch always fits into an empty queue.
      space_cv_.wait(lock, [&] {
        return error_ || queued_bytes_ == 0 ||
               queued_bytes_ + event.text.size() <= max_buffered_bytes_;
      });
      ThrowIfFailed();
      queued_bytes_ += event.text.size();
    }
    queue_.push_back(std::move(event));
  }
  work_cv_.notify_one();
}

void ThreadedSink::Run() {
  for (;;) {
    Event e;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      e = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    std::exception_ptr error;
    try {
      switch (e.kind) {
        case Kind::kDirectory:
          inner_.CreateDirectory(e.text);
          break;
        case Kind::kBeginRegular:
          inner_.BeginRegular(e.text, e.executable, e.size, e.contents_offset);
          break;
        case Kind::kData:
          inner_.RegularData(e.text);
          break;
        case Kind::kEndRegular:
          inner_.EndRegular();
          break;
        case Kind::kSymlink:
          inner_.CreateSymlink(e.text, e.target);
          break;
      }
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard lock(mu_);
      busy_ = false;
      if (e.kind == Kind::kData) {
        queued_bytes_ -= e.text.size();
        if (spare_.size() * batch_bytes_ < max_buffered_bytes_) spare_.push_back(std::move(e.text));
      }
      if (error) {
        error_ = error;
        queue_.clear();
        queued_bytes_ = 0;
      }
    }
    space_cv_.notify_all();
    if (error) return;  // nothing more reaches the inner sink; the destructor joins
  }
}

}  // namespace nls
