// A small, bounded, thread-safe stock of objects to reuse (decoder states, buffers).
//
// Why: memory a finished download touched, if freed, goes back to the kernel or to another
// thread's malloc arena, and the next download faults fresh pages in again. A page fault costs
// about 17 us on the benchmark VM (docs/benchmarks.md, "Filesystem"), and a zstd or xz decoder's
// window alone is 2-8 MiB. Objects kept here stay allocated (and resident) until reused: at most
// `capacity` of them.
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace nls {

template <typename T>
class FreeList {
 public:
  explicit FreeList(size_t capacity) : capacity_(capacity) {}

  // A kept object (the most recently given back), or nullopt when none is kept.
  std::optional<T> Take() {
    std::lock_guard lock(mu_);
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.back()));
    items_.pop_back();
    return item;
  }

  // Keeps `item` for a later Take(), or destroys it when `capacity` objects are kept already.
  void Give(T item) {
    std::unique_lock lock(mu_);
    if (items_.size() >= capacity_) {
      lock.unlock();
      return;  // `item` is destroyed here, outside the lock
    }
    items_.push_back(std::move(item));
  }

  size_t size() {
    std::lock_guard lock(mu_);
    return items_.size();
  }

 private:
  std::mutex mu_;
  std::vector<T> items_;
  const size_t capacity_;
};

}  // namespace nls
