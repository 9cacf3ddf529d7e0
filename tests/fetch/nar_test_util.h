// Test helpers for NAR parsing: a sink that records events, and chunked feeding.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "fetch/nar_parser.h"
#include "fetch/nar_sink.h"

namespace nls::testing {

// Records every event as a line; a regular file's data pieces are joined so that recordings of
// different chunkings compare equal. Checks the sink contract as it goes.
class RecordingSink : public NarSink {
 public:
  void CreateDirectory(std::string_view path) override {
    EXPECT_FALSE(in_file_);
    events.push_back("dir '" + std::string(path) + "'");
  }
  void BeginRegular(std::string_view path, bool executable, uint64_t size,
                    uint64_t contents_offset) override {
    EXPECT_FALSE(in_file_);
    in_file_ = true;
    announced_ = size;
    data_.clear();
    events.push_back("reg '" + std::string(path) + "' x=" + std::to_string(executable) +
                     " size=" + std::to_string(size) + " off=" + std::to_string(contents_offset));
  }
  void RegularData(std::string_view data) override {
    EXPECT_TRUE(in_file_);
    EXPECT_FALSE(data.empty());
    EXPECT_LE(data.size(), NarParser::kMaxDataPiece);
    max_piece = std::max(max_piece, data.size());
    data_.append(data);
  }
  void EndRegular() override {
    EXPECT_TRUE(in_file_);
    EXPECT_EQ(data_.size(), announced_);
    in_file_ = false;
    events.push_back("data '" + data_ + "'");
  }
  void CreateSymlink(std::string_view path, std::string_view target) override {
    EXPECT_FALSE(in_file_);
    events.push_back("sym '" + std::string(path) + "' -> '" + std::string(target) + "'");
  }

  std::vector<std::string> events;
  size_t max_piece = 0;

 private:
  bool in_file_ = false;
  uint64_t announced_ = 0;
  std::string data_;
};

// Feeds `nar` in pieces of `chunk` bytes (0: all at once). Returns Finish()'s hash.
inline Hash FeedChunked(NarParser& parser, std::string_view nar, size_t chunk) {
  if (chunk == 0) chunk = nar.size() + 1;
  for (size_t i = 0; i < nar.size(); i += chunk) parser.Feed(nar.substr(i, chunk));
  return parser.Finish();
}

// Feeds `nar` in random pieces (1..max_chunk bytes) drawn from `seed`.
inline Hash FeedRandom(NarParser& parser, std::string_view nar, uint32_t seed, size_t max_chunk) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> dist(1, max_chunk);
  for (size_t i = 0; i < nar.size();) {
    size_t n = std::min(dist(rng), nar.size() - i);
    parser.Feed(nar.substr(i, n));
    i += n;
  }
  return parser.Finish();
}

}  // namespace nls::testing
