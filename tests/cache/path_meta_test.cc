#include "cache/path_meta.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>

#include "cache/chunker.h"
#include "cache/size.h"
#include "fetch/error.h"

namespace nls {
namespace {

ChunkRef Ref(std::string_view data) { return ChunkRef{ChunkId::Of(data), uint32_t(data.size())}; }

std::shared_ptr<const PathMeta> Sample() {
  PathMetaBuilder b;
  b.AddDirectory("");
  b.AddDirectory("bin");
  b.AddRegular("bin/hello", true, 5, {Ref("hello")});
  b.AddSymlink("bin/hi", "hello");
  b.AddDirectory("lib");
  b.AddRegular("lib/a", false, 6, {Ref("abc"), Ref("def")});
  b.AddRegular("lib/empty", false, 0, {});
  b.AddRegular("README", false, 3, {Ref("xyz")});
  return b.Build();
}

TEST(PathMetaTest, BuildLayoutAndLookup) {
  auto m = Sample();
  ASSERT_EQ(m->node_count(), 8u);
  EXPECT_EQ(m->node(0).type, PathMeta::Type::kDirectory);
  // Root children consecutive and sorted: README < bin < lib (unsigned byte order).
  EXPECT_EQ(m->node(0).first, 1u);
  EXPECT_EQ(m->node(0).count, 3u);
  EXPECT_EQ(m->name(1), "README");
  EXPECT_EQ(m->name(2), "bin");
  EXPECT_EQ(m->name(3), "lib");
  auto bin = m->Lookup(0, "bin");
  ASSERT_TRUE(bin);
  auto hello = m->Lookup(*bin, "hello");
  ASSERT_TRUE(hello);
  EXPECT_TRUE(m->node(*hello).executable);
  EXPECT_EQ(m->node(*hello).size, 5u);
  auto hi = m->Lookup(*bin, "hi");
  ASSERT_TRUE(hi);
  EXPECT_EQ(m->symlink_target(*hi), "hello");
  EXPECT_FALSE(m->Lookup(0, "nope"));
  EXPECT_FALSE(m->Lookup(0, "bin/hello"));
  EXPECT_FALSE(m->Lookup(*hello, "x"));  // not a directory
  auto a = m->Lookup(*m->Lookup(0, "lib"), "a");
  ASSERT_TRUE(a);
  ASSERT_EQ(m->chunks(*a).size(), 2u);
  EXPECT_EQ(m->chunk_offsets(*a)[1], 3u);
  EXPECT_EQ(m->ChunkAt(*a, 0), 0u);
  EXPECT_EQ(m->ChunkAt(*a, 2), 0u);
  EXPECT_EQ(m->ChunkAt(*a, 3), 1u);
  EXPECT_EQ(m->ChunkAt(*a, 5), 1u);
  EXPECT_EQ(m->content_bytes(), 14u);
  EXPECT_EQ(m->node(*m->Lookup(0, "bin")).parent, 0u);
}

TEST(PathMetaTest, SerializeRoundTrip) {
  auto m = Sample();
  std::string bytes = m->Serialize();
  auto l = PathMeta::Load(bytes);
  EXPECT_EQ(l->Serialize(), bytes);
  EXPECT_EQ(l->node_count(), m->node_count());
  EXPECT_EQ(l->symlink_target(*l->Lookup(*l->Lookup(0, "bin"), "hi")), "hello");
}

// Packed small files: the chunk records' offsets survive the round trip; version 1 files (no
// offset field) still load, with offset 0.
TEST(PathMetaTest, ChunkOffsetsAndVersion1) {
  PathMetaBuilder b;
  b.AddDirectory("");
  ChunkId pack = ChunkId::Of("aaabbbbb");
  b.AddRegular("a", false, 3, {ChunkRef{pack, 3, 0}});
  b.AddRegular("b", true, 5, {ChunkRef{pack, 5, 3}});
  auto m = PathMeta::Load(b.Build()->Serialize());
  auto a = m->Lookup(0, "a"), bb = m->Lookup(0, "b");
  ASSERT_TRUE(a && bb);
  EXPECT_EQ(m->chunks(*a)[0].offset, 0u);
  EXPECT_EQ(m->chunks(*bb)[0].offset, 3u);
  EXPECT_EQ(m->chunks(*bb)[0].id, pack);
  EXPECT_EQ(m->chunk_offsets(*bb)[0], 0u);  // offsets within the file are unaffected

  // Version 1 of Sample(): header, nodes, 20-byte chunk records, strings, XXH3-64.
  auto v2 = Sample()->Serialize();
  const size_t header = 32, nodes = Sample()->node_count() * 40;
  const size_t chunks = Sample()->all_chunks().size();
  std::string v1 = v2.substr(0, header + nodes);
  v1[8] = 1;  // version
  for (size_t i = 0; i < chunks; ++i) v1 += v2.substr(header + nodes + i * 24, 20);
  v1 += v2.substr(header + nodes + chunks * 24, v2.size() - 8 - (header + nodes + chunks * 24));
  uint64_t sum = XXH3_64bits(v1.data(), v1.size());
  for (int i = 0; i < 8; ++i) v1.push_back(char(sum >> (8 * i)));
  auto old = PathMeta::Load(v1);
  EXPECT_EQ(old->Serialize(), v2);
  std::string v3 = v2;
  v3[8] = 3;
  EXPECT_THROW(PathMeta::Load(v3), FormatError);
}

TEST(PathMetaTest, SingleFileAndSymlinkRoots) {
  PathMetaBuilder b;
  b.AddRegular("", false, 3, {Ref("abc")});
  auto m = PathMeta::Load(b.Build()->Serialize());
  EXPECT_EQ(m->node_count(), 1u);
  EXPECT_EQ(m->node(0).type, PathMeta::Type::kRegular);
  PathMetaBuilder s;
  s.AddSymlink("", "/nix/store/x");
  auto l = PathMeta::Load(s.Build()->Serialize());
  EXPECT_EQ(l->symlink_target(0), "/nix/store/x");
}

TEST(PathMetaTest, LoadRejectsDamage) {
  std::string bytes = Sample()->Serialize();
  // Every single-byte flip anywhere is caught (checksum or structure), never a crash.
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x20;
    EXPECT_THROW(PathMeta::Load(bad), FormatError) << "flip at " << i;
  }
  for (size_t n : {size_t(0), size_t(10), bytes.size() - 1})
    EXPECT_THROW(PathMeta::Load(bytes.substr(0, n)), FormatError);
  EXPECT_THROW(PathMeta::Load(bytes + "x"), FormatError);
}

TEST(PathMetaTest, BuilderRejectsBadTrees) {
  PathMetaBuilder b;
  EXPECT_THROW(b.AddDirectory("a"), FormatError);  // before the root
  PathMetaBuilder c;
  c.AddDirectory("");
  EXPECT_THROW(c.AddRegular("x/y", false, 0, {}), FormatError);          // no parent
  EXPECT_THROW(c.AddRegular("z", false, 4, {Ref("abc")}), FormatError);  // sizes disagree
}

TEST(PathMetaTest, FiftyThousandFilesLoadFast) {
  PathMetaBuilder b;
  b.AddDirectory("");
  for (int d = 0; d < 50; ++d) {
    std::string dir = "dir" + std::to_string(d);
    b.AddDirectory(dir);
    for (int f = 0; f < 1000; ++f) {
      std::string data = dir + "/" + std::to_string(f);
      b.AddRegular(dir + "/file" + std::to_string(f), f % 3 == 0, data.size(), {Ref(data)});
    }
  }
  std::string bytes = b.Build()->Serialize();
  auto start = std::chrono::steady_clock::now();
  auto m = PathMeta::Load(bytes);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(m->node_count(), 50051u);
  EXPECT_LT(ms, 100.0);  // sanitizer builds included; a plain build takes a few ms
  auto d7 = m->Lookup(0, "dir7");
  ASSERT_TRUE(d7);
  auto f = m->Lookup(*d7, "file999");
  ASSERT_TRUE(f);
  EXPECT_EQ(m->node(*f).size, std::string("dir7/999").size());
}

TEST(ChunkerTest, CdcBoundsAndDeterminism) {
  std::mt19937_64 rng(1);
  std::string data(4 << 20, '\0');
  for (auto& c : data) c = char(rng());
  ChunkerParams p = ChunkerParams::Cdc(64 * 1024);
  std::vector<size_t> cuts;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t n = FindCut(p, reinterpret_cast<const uint8_t*>(data.data()) + pos, data.size() - pos);
    ASSERT_GE(n, 1u);
    if (pos + n < data.size()) {
      EXPECT_GE(n, p.min);
      EXPECT_LE(n, p.max);
    }
    cuts.push_back(pos + n);
    pos += n;
  }
  double avg = double(data.size()) / cuts.size();
  EXPECT_GT(avg, 32 * 1024);
  EXPECT_LT(avg, 128 * 1024);
  // Insert bytes near the start: most later cut points survive (shifted by the insertion).
  std::string shifted = data.substr(0, 1000) + "INSERTED" + data.substr(1000);
  std::set<size_t> after;
  pos = 0;
  while (pos < shifted.size()) {
    pos += FindCut(p, reinterpret_cast<const uint8_t*>(shifted.data()) + pos, shifted.size() - pos);
    after.insert(pos);
  }
  size_t kept = 0;
  for (size_t c : cuts) kept += after.count(c + 8);
  EXPECT_GE(kept, cuts.size() - 3);
}

// CutFinder, fed the same bytes in pieces of any size, cuts exactly where FindCut cuts the
// whole file (chunk boundaries are part of the on-disk format: they decide dedup).
TEST(ChunkerTest, CutFinderMatchesFindCut) {
  std::mt19937_64 rng(7);
  std::string data(3 << 20, '\0');
  for (auto& c : data) c = char(rng());
  // A low-entropy stretch, where only `max` cuts.
  std::fill(data.begin() + (1 << 20), data.begin() + (1 << 20) + 700000, 'z');
  const auto* d = reinterpret_cast<const uint8_t*>(data.data());
  for (ChunkerParams p :
       {ChunkerParams::Default(), ChunkerParams::Cdc(4096), ChunkerParams{true, 1024, 4096, 16384},
        ChunkerParams::Fixed(65536), ChunkerParams{true, 8192, 8192, 8192}}) {
    for (size_t len : {size_t(1), size_t(1000), size_t(p.min), size_t(p.min) + 1,
                       size_t(p.max) + 77, data.size()}) {
      std::vector<size_t> want;
      for (size_t pos = 0; pos < len;) {
        pos += FindCut(p, d + pos, len - pos);
        want.push_back(pos);
      }
      for (int feed = 0; feed < 3; ++feed) {
        CutFinder f(p);
        f.Reset();
        std::vector<size_t> got;
        size_t pos = 0;
        while (pos < len) {
          size_t piece = feed == 0 ? len - pos : 1 + rng() % (feed == 1 ? 300000 : 70);
          piece = std::min(piece, len - pos);
          size_t n = f.Consume(d + pos, piece);
          ASSERT_LE(n, piece);
          pos += n;
          if (f.chunk_ended()) {
            got.push_back(pos);
          } else {
            ASSERT_EQ(n, piece);
          }
        }
        if (got.empty() || got.back() != len) got.push_back(len);  // the file's last chunk
        ASSERT_EQ(got, want) << p.ToString() << " len " << len << " feed " << feed;
      }
    }
  }
}

TEST(ChunkerTest, FixedAndSmall) {
  std::string data(1000, 'x');
  auto* d = reinterpret_cast<const uint8_t*>(data.data());
  EXPECT_EQ(FindCut(ChunkerParams::Fixed(300), d, 1000), 300u);
  EXPECT_EQ(FindCut(ChunkerParams::Fixed(300), d, 200), 200u);
  EXPECT_EQ(FindCut(ChunkerParams::Default(), d, 1000), 1000u);  // below min: one chunk
}

TEST(ParseSizeTest, Suffixes) {
  EXPECT_EQ(ParseSize("0"), 0u);
  EXPECT_EQ(ParseSize("1234"), 1234u);
  EXPECT_EQ(ParseSize("1K"), 1024u);
  EXPECT_EQ(ParseSize("512k"), 512u * 1024);
  EXPECT_EQ(ParseSize("100M"), 100ull << 20);
  EXPECT_EQ(ParseSize("20G"), 20ull << 30);
  EXPECT_EQ(ParseSize("20GiB"), 20ull << 30);
  EXPECT_EQ(ParseSize("20GB"), 20ull << 30);
  EXPECT_EQ(ParseSize("2T"), 2ull << 40);
  EXPECT_EQ(ParseSize("7B"), 7u);
  for (const char* bad :
       {"", "G", "-1", "1.5G", "10X", "10 G", "1GG", "99999999999999999999", "16777216T", " 1"}) {
    EXPECT_THROW(ParseSize(bad), ConfigError) << bad;
  }
  try {
    ParseSize("12Q");
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("12Q"), std::string::npos);
  }
}

}  // namespace
}  // namespace nls
