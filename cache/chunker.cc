#include "cache/chunker.h"

#include <algorithm>
#include <array>
#include <bit>

namespace nls {

namespace {

// 256 pseudo-random 64-bit values (splitmix64 from a fixed seed): the gear table. Changing it
// changes every chunk boundary, i.e. the on-disk format (see docs/cache.md).
constexpr std::array<uint64_t, 256> MakeGear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = 0x6e6c732d67656172ULL;  // "nls-gear"
  for (auto& v : g) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return g;
}
constexpr std::array<uint64_t, 256> kGear = MakeGear();

// A mask with `bits` one bits spread over the high half of the word (the gear hash mixes the most
// recent bytes into the high bits last, so use spread high bits as FastCDC does).
constexpr uint64_t SpreadMask(int bits) {
  uint64_t m = 0;
  int placed = 0;
  for (int pos = 63; pos >= 0 && placed < bits; pos -= 2) {
    m |= uint64_t(1) << pos;
    ++placed;
  }
  for (int pos = 62; pos >= 0 && placed < bits; pos -= 2) {
    m |= uint64_t(1) << pos;
    ++placed;
  }
  return m;
}

}  // namespace

std::string ChunkerParams::ToString() const {
  auto k = [](uint32_t v) { return std::to_string(v / 1024) + "K"; };
  if (!content_defined) return "fixed-" + k(avg);
  return "cdc-" + k(min) + "/" + k(avg) + "/" + k(max);
}

size_t FindCut(const ChunkerParams& p, const uint8_t* data, size_t n) {
  if (!p.content_defined) return n < p.avg ? n : p.avg;
  if (n <= p.min) return n;
  size_t limit = n < p.max ? n : p.max;
  size_t normal = p.avg < limit ? p.avg : limit;
  // Normalized chunking: a stricter mask (2 more bits) before the average size, a looser one
  // (2 fewer bits) after it, which narrows the chunk size distribution around `avg`.
  int bits = std::countr_zero(p.avg);
  const uint64_t mask_s = SpreadMask(bits + 2);
  const uint64_t mask_l = SpreadMask(bits - 2);
  uint64_t h = 0;
  size_t i = p.min;
  for (; i < normal; ++i) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & mask_s)) return i + 1;
  }
  for (; i < limit; ++i) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & mask_l)) return i + 1;
  }
  return limit;
}

CutFinder::CutFinder(const ChunkerParams& params) : p_(params) {
  if (p_.content_defined) {
    int bits = std::countr_zero(p_.avg);
    mask_s_ = SpreadMask(bits + 2);
    mask_l_ = SpreadMask(bits - 2);
  }
}

void CutFinder::Reset() {
  pos_ = 0;
  h_ = 0;
  ended_ = false;
}

size_t CutFinder::Consume(const uint8_t* data, size_t n) {
  if (ended_) Reset();
  if (!p_.content_defined) {
    size_t take = size_t(std::min<uint64_t>(n, p_.avg - pos_));
    pos_ += take;
    ended_ = pos_ == p_.avg;
    return take;
  }
  size_t i = 0;
  if (pos_ < p_.min) {  // no cut before `min`: the hash starts there
    i = size_t(std::min<uint64_t>(n, p_.min - pos_));
    pos_ += i;
  }
  // As FindCut: the stricter mask up to `avg`, then the looser one up to `max`. `scan` hashes
  // data[i, ...) until the chunk reaches `until` bytes or the data ends; true at a cut.
  auto scan = [&](uint64_t until, uint64_t mask) {
    const size_t end = pos_ < until ? i + size_t(std::min<uint64_t>(n - i, until - pos_)) : i;
    const size_t start = i;
    uint64_t h = h_;
    bool cut = false;
    while (i < end) {
      h = (h << 1) + kGear[data[i++]];
      if (!(h & mask)) {
        cut = true;
        break;
      }
    }
    h_ = h;
    pos_ += i - start;
    return cut;
  };
  ended_ = scan(p_.avg, mask_s_) || scan(p_.max, mask_l_) || pos_ == p_.max;
  return i;
}

}  // namespace nls
