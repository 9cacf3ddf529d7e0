// libFuzzer target: the streaming NAR parser. The first byte of the input picks a chunking seed;
// the rest is a NAR fed both whole and in pseudo-random pieces. Both feeds must agree on the
// events and on success/failure, and events must follow the NarSink contract.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fetch/error.h"
#include "fetch/nar_parser.h"
#include "fetch/nar_sink.h"

namespace {

class CheckingSink : public nls::NarSink {
 public:
  void CreateDirectory(std::string_view path) override {
    Require(!in_file_);
    events_ += "D" + std::string(path) + '\0';
  }
  void BeginRegular(std::string_view path, bool executable, uint64_t size,
                    uint64_t offset) override {
    Require(!in_file_);
    in_file_ = true;
    left_ = size;
    events_ += "F" + std::string(path) + (executable ? "x" : "-") + std::to_string(size) + "@" +
               std::to_string(offset) + '\0';
  }
  void RegularData(std::string_view data) override {
    Require(in_file_ && !data.empty() && data.size() <= left_ &&
            data.size() <= nls::NarParser::kMaxDataPiece);
    left_ -= data.size();
    events_.append(data);
  }
  void EndRegular() override {
    Require(in_file_ && left_ == 0);
    in_file_ = false;
    events_ += "E";
  }
  void CreateSymlink(std::string_view path, std::string_view target) override {
    Require(!in_file_ && !target.empty() && target.size() <= 4095);
    events_ += "L" + std::string(path) + '\0' + std::string(target) + '\0';
  }
  const std::string& events() const { return events_; }

 private:
  static void Require(bool ok) {
    if (!ok) std::abort();
  }
  std::string events_;
  bool in_file_ = false;
  uint64_t left_ = 0;
};

// Returns true if the NAR parsed; `events` gets what the sink saw.
bool Parse(std::string_view nar, uint32_t seed, std::string& events) {
  CheckingSink sink;
  bool ok = true;
  try {
    nls::NarParser parser(sink);
    uint32_t state = seed;
    size_t i = 0;
    while (i < nar.size()) {
      size_t n = nar.size() - i;
      if (seed != 0) {
        state = state * 1103515245u + 12345u;
        n = std::min<size_t>(n, 1 + (state >> 16) % 64);
      }
      parser.Feed(nar.substr(i, n));
      i += n;
    }
    nls::Hash h = parser.Finish(nar.size());
    if (!(h == nls::Hash::Of(nar))) std::abort();
  } catch (const nls::FormatError&) {
    ok = false;
  }
  events = sink.events();
  return ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint32_t seed = data[0] + 1u;
  std::string_view nar(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string whole, pieces;
  bool ok_whole = Parse(nar, 0, whole);
  bool ok_pieces = Parse(nar, seed, pieces);
  if (ok_whole != ok_pieces) std::abort();
  // A failed parse may stop at different points inside file contents; a successful one must
  // give identical events.
  if (ok_whole && whole != pieces) std::abort();
  return 0;
}
