#include "fetch/decompressor.h"

#include <bzlib.h>
#include <gtest/gtest.h>
#include <lzma.h>
#include <zstd.h>

#include <algorithm>
#include <random>
#include <string>

#include "fetch/error.h"

namespace nls {
namespace {

// Compressible but not trivial data.
std::string SampleData(size_t n) {
  std::mt19937 rng(42);
  std::string s;
  s.reserve(n);
  const char* words[] = {"nix ", "store ", "lazy ", "fuse ", "chunk ", "\n", "\x01\x02\xff"};
  while (s.size() < n) s += words[rng() % 7];
  s.resize(n);
  return s;
}

std::string CompressZstd(const std::string& in) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(in.size()), '\0');
  size_t n = ZSTD_compress2(c, out.data(), out.size(), in.data(), in.size());
  ZSTD_freeCCtx(c);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string CompressXz(const std::string& in) {
  std::string out(lzma_stream_buffer_bound(in.size()), '\0');
  size_t pos = 0;
  lzma_ret r = lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, nullptr,
                                       reinterpret_cast<const uint8_t*>(in.data()), in.size(),
                                       reinterpret_cast<uint8_t*>(out.data()), &pos, out.size());
  EXPECT_EQ(r, LZMA_OK);
  out.resize(pos);
  return out;
}

std::string CompressBzip2(const std::string& in) {
  unsigned len = static_cast<unsigned>(in.size() + in.size() / 100 + 600);
  std::string out(len, '\0');
  int r = BZ2_bzBuffToBuffCompress(out.data(), &len, const_cast<char*>(in.data()),
                                   static_cast<unsigned>(in.size()), 9, 0, 0);
  EXPECT_EQ(r, BZ_OK);
  out.resize(len);
  return out;
}

std::string Compress(const std::string& method, const std::string& in) {
  if (method == "zstd") return CompressZstd(in);
  if (method == "xz") return CompressXz(in);
  if (method == "bzip2") return CompressBzip2(in);
  return in;
}

// Decompresses `in` fed in `chunk`-byte pieces, checking output piece sizes.
std::string Decompress(const std::string& method, std::string_view in, size_t chunk) {
  auto d = Decompressor::Create(method);
  std::string out;
  auto sink = [&](std::string_view piece) {
    EXPECT_FALSE(piece.empty());
    EXPECT_LE(piece.size(), 1024u * 1024u);
    out.append(piece);
  };
  if (chunk == 0) chunk = in.size() + 1;
  for (size_t i = 0; i < in.size(); i += chunk) d->Feed(in.substr(i, chunk), sink);
  d->Finish(sink);
  return out;
}

class DecompressorTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DecompressorTest, RoundTripsInAnyChunking) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{1000}, size_t{3'000'000}}) {
    std::string data = SampleData(size);
    std::string packed = Compress(GetParam(), data);
    for (size_t chunk : {size_t{0}, size_t{1}, size_t{7}, size_t{65536}}) {
      if (chunk == 1 && packed.size() > 100000) continue;
      EXPECT_EQ(Decompress(GetParam(), packed, chunk), data)
          << GetParam() << " size " << size << " chunk " << chunk;
    }
  }
}

TEST_P(DecompressorTest, HighlyCompressibleInputDrainsFully) {
  // Tiny input, huge output: exercises the loops that drain a full output buffer.
  std::string zeros(20 << 20, '\0');
  std::string packed = Compress(GetParam(), zeros);
  EXPECT_EQ(Decompress(GetParam(), packed, 0), zeros);
  EXPECT_EQ(Decompress(GetParam(), packed, 5), zeros);
}

TEST_P(DecompressorTest, ConcatenatedStreams) {
  std::string a = SampleData(5000), b = SampleData(7000);
  std::string packed = Compress(GetParam(), a) + Compress(GetParam(), b);
  EXPECT_EQ(Decompress(GetParam(), packed, 0), a + b);
  EXPECT_EQ(Decompress(GetParam(), packed, 3), a + b);
}

TEST_P(DecompressorTest, TruncatedStreamFailsInFinish) {
  if (GetParam() == "none") GTEST_SKIP() << "no framing to truncate";
  std::string packed = Compress(GetParam(), SampleData(200000));
  for (size_t keep : {size_t{0}, size_t{1}, packed.size() / 2, packed.size() - 1}) {
    auto d = Decompressor::Create(GetParam());
    auto sink = [](std::string_view) {};
    try {
      d->Feed(std::string_view(packed).substr(0, keep), sink);
      d->Finish(sink);
      ADD_FAILURE() << GetParam() << ": truncation to " << keep << " bytes not detected";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(GetParam()), std::string::npos) << e.what();
    }
  }
}

TEST_P(DecompressorTest, CorruptStreamFails) {
  if (GetParam() == "none") GTEST_SKIP() << "no framing to corrupt";
  std::string packed = Compress(GetParam(), SampleData(200000));
  for (size_t where : {size_t{0}, packed.size() / 2}) {
    std::string bad = packed;
    bad[where] ^= 0x55;
    EXPECT_THROW(Decompress(GetParam(), bad, 4096), FormatError) << where;
  }
  // Trailing garbage after a complete stream.
  EXPECT_THROW(Decompress(GetParam(), packed + "garbage!", 0), FormatError);
}

// Decoder states are kept and reused by the next decompressor (fetch/free_list.h): one that was
// abandoned mid-stream (truncated, corrupt, or its output threw) must not leak state into the
// next stream. Several decompressors alive at once must not share one.
TEST_P(DecompressorTest, ReusedDecoderStatesStartClean) {
  std::string a = SampleData(300000), b = SampleData(200000) + "b";
  std::string pa = Compress(GetParam(), a), pb = Compress(GetParam(), b);
  for (int round = 0; round < 6; ++round) {
    {
      auto half = Decompressor::Create(GetParam());  // abandoned halfway
      half->Feed(std::string_view(pa).substr(0, pa.size() / 2), [](std::string_view) {});
    }
    if (GetParam() != "none") {
      std::string bad = pa;
      bad[bad.size() / 2] ^= 0x55;
      EXPECT_THROW(Decompress(GetParam(), bad, 4096), FormatError);
    }
    // Two at once, interleaved, then each finished.
    auto d1 = Decompressor::Create(GetParam()), d2 = Decompressor::Create(GetParam());
    std::string o1, o2;
    auto s1 = [&](std::string_view p) { o1.append(p); };
    auto s2 = [&](std::string_view p) { o2.append(p); };
    for (size_t i = 0; i < std::max(pa.size(), pb.size()); i += 10000) {
      if (i < pa.size()) d1->Feed(std::string_view(pa).substr(i, 10000), s1);
      if (i < pb.size()) d2->Feed(std::string_view(pb).substr(i, 10000), s2);
    }
    d1->Finish(s1);
    d2->Finish(s2);
    ASSERT_EQ(o1, a) << GetParam() << " round " << round;
    ASSERT_EQ(o2, b) << GetParam() << " round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, DecompressorTest,
                         ::testing::Values("none", "zstd", "xz", "bzip2"));

TEST(DecompressorCreateTest, UnknownMethodIsNamed) {
  for (const char* m : {"br", "gzip", "", "ZSTD"}) {
    try {
      Decompressor::Create(m);
      ADD_FAILURE() << m;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + std::string(m) + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(DecompressorCreateTest, OutputExceptionsPropagate) {
  std::string packed = CompressZstd(SampleData(1000));
  auto d = Decompressor::Create("zstd");
  EXPECT_THROW(d->Feed(packed, [](std::string_view) { throw std::runtime_error("stop"); }),
               std::runtime_error);
}

}  // namespace
}  // namespace nls
