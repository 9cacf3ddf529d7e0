#include "cache/store_cache.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "fetch/error.h"
#include "tests/cache/cache_test_util.h"

namespace nls {
namespace {

using test::Add;
using test::Item;
using test::Tree;
namespace fs = std::filesystem;

std::string Base(uint64_t n, const std::string& name = "pkg") {
  return test::HashPartFor(n) + "-" + name + std::to_string(n);
}

// While it lives, no file this process writes may grow past `bytes` (a write beyond fails with
// EFBIG; SIGXFSZ is ignored meanwhile). Restores the limit and the signal's handler.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    if (::getrlimit(RLIMIT_FSIZE, &old_) != 0) throw std::runtime_error("getrlimit");
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {bytes, old_.rlim_max};
    if (::setrlimit(RLIMIT_FSIZE, &small) != 0) throw std::runtime_error("setrlimit");
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  struct rlimit old_;
  void (*old_handler_)(int);
};

class StoreCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetCacheLogger([this](std::string_view line) { log_.emplace_back(line); });
    opt_.dir = dir_.path() + "/cache";
    opt_.sync = false;
    // Small chunks so ordinary test files span several.
    opt_.chunking = ChunkerParams{true, 1024, 4096, 16384};
  }
  void TearDown() override { SetCacheLogger(nullptr); }
  std::unique_ptr<StoreCache> Open() { return StoreCache::Open(opt_); }
  size_t ChunkFiles() { return test::CountFiles(opt_.dir + "/chunks"); }

  test::TempDir dir_;
  CacheOptions opt_;
  std::vector<std::string> log_;
  std::mt19937_64 rng_{42};
};

Tree SimpleTree(std::mt19937_64& rng, size_t size) {
  Tree t;
  t[""] = Item{PathMeta::Type::kDirectory, false, ""};
  t["bin"] = Item{PathMeta::Type::kDirectory, false, ""};
  t["bin/prog"] = Item{PathMeta::Type::kRegular, true, test::RandomBytes(rng, size)};
  t["bin/link"] = Item{PathMeta::Type::kSymlink, false, "prog"};
  t["empty"] = Item{PathMeta::Type::kRegular, false, ""};
  t["small"] = Item{PathMeta::Type::kRegular, false, "hello world\n"};
  return t;
}

TEST_F(StoreCacheTest, NothingVisibleBeforeCommitAndAbandonedWriterLeavesNothing) {
  auto cache = Open();
  Tree t = SimpleTree(rng_, 100000);
  NarInfo info = test::MakeInfo(Base(1));
  {
    auto w = cache->BeginWrite(info);
    test::Feed(*w, t);
    EXPECT_EQ(cache->Find(info.store_path.hash_part()), nullptr);
    EXPECT_TRUE(cache->List().empty());
    EXPECT_GT(ChunkFiles(), 0u);  // complete chunks are written as data arrives
  }                               // destroyed without Commit
  EXPECT_EQ(ChunkFiles(), 0u);
  EXPECT_EQ(cache->Find(info.store_path.hash_part()), nullptr);
  auto w = cache->BeginWrite(info);
  test::Feed(*w, t);
  auto cp = w->Commit();
  ASSERT_NE(cp, nullptr);
  auto found = cache->Find(info.store_path.hash_part());
  ASSERT_EQ(found, cp);
  EXPECT_EQ(test::Diff(*cache, *found, t), "");
  EXPECT_EQ(found->info.ToString(), info.ToString());
  EXPECT_EQ(cache->List().size(), 1u);
  EXPECT_THROW(w->Commit(), Error);
}

// Where O_TMPFILE is missing, chunk files are written under DIR/tmp and renamed: the same results,
// and nothing is left in DIR/tmp after a commit or an abandoned writer.
TEST_F(StoreCacheTest, NamedChunkFilesWhereUnnamedOnesAreMissing) {
  opt_.unnamed_chunk_files = false;
  auto cache = Open();
  Tree t = SimpleTree(rng_, 100000);
  for (int i = 0; i < 50; ++i)
    t["f" + std::to_string(i)] =
        Item{PathMeta::Type::kRegular, false, test::RandomBytes(rng_, 900)};
  NarInfo info = test::MakeInfo(Base(1));
  {
    auto w = cache->BeginWrite(info);
    w->CreateDirectory("");
    w->BeginRegular("big", false, 30000, 0);
    w->RegularData(test::RandomBytes(rng_, 20000));
    // Complete chunks (at most 16 KiB here) are linked; the current one is still gathered.
    EXPECT_GT(ChunkFiles(), 0u);
    EXPECT_EQ(test::CountFiles(opt_.dir + "/tmp"), 0u);
  }
  EXPECT_EQ(test::CountFiles(opt_.dir + "/tmp"), 0u);
  EXPECT_EQ(ChunkFiles(), 0u);
  auto cp = Add(*cache, info, t);
  EXPECT_EQ(test::CountFiles(opt_.dir + "/tmp"), 0u);
  EXPECT_EQ(test::Diff(*cache, *cp, t), "");
  cache.reset();
  cache = Open();
  cp = cache->Find(info.store_path.hash_part());
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(test::Diff(*cache, *cp, t), "");
}

// A chunk write that fails midway (here a file-size limit, EFBIG; a full disk, ENOSPC, takes the
// same path) fails the writer with an error naming the store path and the cause, leaves no
// chunk, temporary or path behind, and the cache goes on working. With unnamed chunk files and
// with named ones (DIR/tmp).
class FailedChunkWriteTest : public StoreCacheTest, public ::testing::WithParamInterface<bool> {};

TEST_P(FailedChunkWriteTest, LeavesNothingBehind) {
  opt_.unnamed_chunk_files = GetParam();
  auto cache = Open();
  Tree good = SimpleTree(rng_, 5000);
  auto kept = Add(*cache, test::MakeInfo(Base(1)), good);
  const size_t chunks = ChunkFiles();
  Tree big;
  big[""] = Item{PathMeta::Type::kDirectory, false, ""};
  big["big"] = Item{PathMeta::Type::kRegular, false, test::RandomBytes(rng_, 200000)};
  std::string what;
  try {
    FileSizeLimit limit(4096);  // chunks here are up to 16 KiB
    auto w = cache->BeginWrite(test::MakeInfo(Base(2)));
    test::Feed(*w, big);
    w->Commit();
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find(Base(2)), std::string::npos) << what;
  EXPECT_NE(what.find(std::strerror(EFBIG)), std::string::npos) << what;
  EXPECT_EQ(cache->Find(test::HashPartFor(2)), nullptr);
  EXPECT_EQ(ChunkFiles(), chunks);
  EXPECT_TRUE(fs::is_empty(opt_.dir + "/tmp"));
  EXPECT_EQ(test::Diff(*cache, *kept, good), "");
  auto again = Add(*cache, test::MakeInfo(Base(2)), big);
  EXPECT_EQ(test::Diff(*cache, *again, big), "");
}

INSTANTIATE_TEST_SUITE_P(ChunkFiles, FailedChunkWriteTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Unnamed" : "Named"; });

// Chunks exactly as large as the gather buffer, arriving in pieces of that size: fixed 64 KiB
// chunks (a 64 KiB buffer) in 64 KiB pieces, a 64 KiB file packed in one piece, and the default
// chunking's 1 MiB chunks (zeros have no content-defined cut) in 1 MiB pieces.
TEST_F(StoreCacheTest, PiecesAsLargeAsTheGatherBuffer) {
  for (const auto& [chunking, piece] :
       {std::pair{ChunkerParams::Fixed(64 * 1024), size_t(64 * 1024)},
        std::pair{ChunkerParams::Default(), size_t(1024 * 1024)}}) {
    SCOPED_TRACE(chunking.ToString());
    opt_.chunking = chunking;
    fs::remove_all(opt_.dir);
    auto cache = Open();
    const std::string zeros(4 * piece, '\0');
    const std::string small = test::RandomBytes(rng_, 64 * 1024);
    NarInfo info = test::MakeInfo(Base(1));
    auto w = cache->BeginWrite(info);
    w->CreateDirectory("");
    w->BeginRegular("a-small", false, small.size(), 0);
    w->RegularData(small);
    w->EndRegular();
    w->BeginRegular("zeros", false, zeros.size(), 0);
    for (size_t off = 0; off < zeros.size(); off += piece)
      w->RegularData(std::string_view(zeros).substr(off, piece));
    w->EndRegular();
    auto cp = w->Commit();
    ASSERT_NE(cp, nullptr);
    Tree t;
    t[""] = Item{PathMeta::Type::kDirectory, false, ""};
    t["a-small"] = Item{PathMeta::Type::kRegular, false, small};
    t["zeros"] = Item{PathMeta::Type::kRegular, false, zeros};
    EXPECT_EQ(test::Diff(*cache, *cp, t), "");
  }
}

// Bytes of a chunk the cache has already are never written: a path made only of known chunks
// commits even where no file may grow past 4 KiB (chunks here are up to 16 KiB), while a path
// with new chunks fails there.
TEST_F(StoreCacheTest, KnownChunksAreNotWrittenAgain) {
  auto cache = Open();
  Tree big;
  big[""] = Item{PathMeta::Type::kDirectory, false, ""};
  big["big"] = Item{PathMeta::Type::kRegular, false, test::RandomBytes(rng_, 200000)};
  Tree other = big;
  other["big"].data = test::RandomBytes(rng_, 200000);
  auto first = Add(*cache, test::MakeInfo(Base(1)), big);
  const size_t chunks = ChunkFiles();
  std::shared_ptr<CachedPath> same;
  std::string same_error, other_error;
  {
    FileSizeLimit limit(4096);
    try {
      same = Add(*cache, test::MakeInfo(Base(2)), big);
    } catch (const Error& e) {
      same_error = e.what();
    }
    try {
      Add(*cache, test::MakeInfo(Base(3)), other);
    } catch (const Error& e) {
      other_error = e.what();
    }
  }
  EXPECT_EQ(same_error, "");
  ASSERT_NE(same, nullptr);
  EXPECT_EQ(test::Diff(*cache, *same, big), "");
  EXPECT_EQ(ChunkFiles(), chunks);
  EXPECT_NE(other_error.find(std::strerror(EFBIG)), std::string::npos) << other_error;
}

TEST_F(StoreCacheTest, WriterRejectsWrongSizes) {
  auto cache = Open();
  auto w = cache->BeginWrite(test::MakeInfo(Base(1)));
  w->CreateDirectory("");
  w->BeginRegular("f", false, 3, 0);
  w->RegularData("ab");
  EXPECT_THROW(w->EndRegular(), FormatError);
  EXPECT_THROW(w->RegularData("cd"), FormatError);
}

TEST_F(StoreCacheTest, PersistsAcrossRestart) {
  Tree t = SimpleTree(rng_, 50000);
  NarInfo info = test::MakeInfo(Base(1), {Base(2)});
  uint64_t id;
  {
    auto cache = Open();
    id = Add(*cache, info, t)->id;
  }
  auto cache = Open();
  auto cp = cache->Find(info.store_path.hash_part());
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(cp->id, id);
  EXPECT_EQ(test::Diff(*cache, *cp, t), "");
  EXPECT_EQ(cp->info.references.size(), 1u);
  EXPECT_EQ(cp->info.ToString(), info.ToString());
}

// With sync (the default outside tests) a commit is visible at once; the metadata reaches
// paths/ in the background, after its chunks are durable. Eviction or a re-fetch before that
// leaves no stray metadata, and closing the cache finishes the work.
TEST_F(StoreCacheTest, DeferredDurability) {
  opt_.sync = true;
  // The worker waits this long after a commit; WaitDurable and closing do not wait for it (if
  // they did, this test would take minutes and hit ctest's timeout).
  opt_.durable_delay_s = 600;
  const std::string paths = opt_.dir + "/paths/";
  auto meta_files = [&] { return test::CountFiles(opt_.dir + "/paths"); };
  Tree t1 = SimpleTree(rng_, 300000), t2 = SimpleTree(rng_, 1000), t3 = SimpleTree(rng_, 2000);
  NarInfo i1 = test::MakeInfo(Base(1)), i2 = test::MakeInfo(Base(2)), i3 = test::MakeInfo(Base(3));
  {
    auto cache = Open();
    EXPECT_EQ(test::Diff(*cache, *Add(*cache, i1, t1), t1), "");  // served before durable
    EXPECT_EQ(meta_files(), 0u) << "the metadata waits in tmp/ during the delay";
    cache->WaitDurable();
    EXPECT_TRUE(fs::exists(paths + std::string(i1.store_path.hash_part())));
    EXPECT_TRUE(fs::is_empty(opt_.dir + "/tmp"));

    // Committed and evicted at once, durable or not: nothing stays on disk (i1 goes too).
    Add(*cache, i2, t2);
    cache->Evict(0);
    cache->WaitDurable();
    EXPECT_EQ(meta_files(), 0u);
    EXPECT_EQ(ChunkFiles(), 0u);
    EXPECT_TRUE(fs::is_empty(opt_.dir + "/tmp"));

    // Committed twice in a row (a racing re-fetch): one metadata file.
    Add(*cache, i3, t3);
    Add(*cache, i3, t3);
    cache->WaitDurable();
    EXPECT_EQ(meta_files(), 1u);
    EXPECT_TRUE(fs::is_empty(opt_.dir + "/tmp"));

    Add(*cache, i1, t1);  // not waited for: closing the cache makes it durable
  }
  EXPECT_EQ(meta_files(), 2u);  // i3 and i1
  EXPECT_TRUE(fs::is_empty(opt_.dir + "/tmp"));
  auto cache = Open();
  auto cp = cache->Find(i1.store_path.hash_part());
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(test::Diff(*cache, *cp, t1), "");
  ASSERT_NE(cache->Find(i3.store_path.hash_part()), nullptr);
  EXPECT_EQ(cache->Find(i2.store_path.hash_part()), nullptr);
}

TEST_F(StoreCacheTest, DedupWithinAndAmongPaths) {
  auto cache = Open();
  std::string big = test::RandomBytes(rng_, 200000);
  Tree a;
  a[""] = Item{PathMeta::Type::kDirectory, false, ""};
  a["x"] = Item{PathMeta::Type::kRegular, false, big};
  a["y"] = Item{PathMeta::Type::kRegular, false, big};  // duplicate inside the path
  Add(*cache, test::MakeInfo(Base(1)), a);
  auto s1 = cache->Stats();
  EXPECT_EQ(s1.logical_bytes, 400000u);
  EXPECT_EQ(s1.unique_bytes, 200000u);
  EXPECT_EQ(ChunkFiles(), s1.chunks);
  // Version 2: the same file with an insertion near the start: content-defined chunks keep most.
  Tree b;
  b[""] = Item{PathMeta::Type::kDirectory, false, ""};
  b["x"] = Item{PathMeta::Type::kRegular, false, big.substr(0, 5000) + "NEW" + big.substr(5000)};
  Add(*cache, test::MakeInfo(Base(2)), b);
  auto s2 = cache->Stats();
  EXPECT_EQ(s2.logical_bytes, 600003u);
  EXPECT_LT(s2.unique_bytes, 200000u + 40000u);  // only the chunks around the edit are new
  EXPECT_GT(s2.dedup_ratio(), 2.4);
  EXPECT_EQ(ChunkFiles(), s2.chunks);
  // Dropping one path keeps the chunks the other still uses.
  cache->Evict(0);
  EXPECT_EQ(cache->List().size(), 0u);
  EXPECT_EQ(ChunkFiles(), 0u);
}

// Files of 1 to chunking.min bytes are packed, in NAR order, into chunks of at most
// chunking.max bytes: one chunk file for many small files. Reads, extents, verification after a
// restart and damage detection work per pack; identical paths give identical packs.
TEST_F(StoreCacheTest, SmallFilesArePackedIntoSharedChunks) {
  Tree t;
  t[""] = Item{PathMeta::Type::kDirectory, false, ""};
  t["d"] = Item{PathMeta::Type::kDirectory, false, ""};
  uint64_t small_bytes = 0;
  for (int i = 0; i < 300; ++i) {
    std::string data = test::RandomBytes(rng_, 1 + rng_() % opt_.chunking.min);
    small_bytes += data.size();
    t["d/f" + std::to_string(i)] = Item{PathMeta::Type::kRegular, i % 7 == 0, data};
  }
  t["d/empty"] = Item{PathMeta::Type::kRegular, false, ""};
  t["exact"] = Item{PathMeta::Type::kRegular, false, test::RandomBytes(rng_, opt_.chunking.min)};
  t["large"] = Item{PathMeta::Type::kRegular, false, test::RandomBytes(rng_, 50000)};
  small_bytes += opt_.chunking.min;
  NarInfo info = test::MakeInfo(Base(1));
  std::set<ChunkId> packs;
  std::string some_small;  // a packed file not at offset 0
  {
    auto cache = Open();
    auto cp = Add(*cache, info, t);
    const PathMeta& m = *cp->meta;
    for (const auto& [rel, item] : t) {
      auto n = test::NodeOf(m, rel);
      ASSERT_TRUE(n) << rel;
      if (item.type != PathMeta::Type::kRegular || item.data.empty() || rel == "large") continue;
      ASSERT_EQ(m.chunks(*n).size(), 1u) << rel;
      const ChunkRef& c = m.chunks(*n)[0];
      EXPECT_LE(c.offset + c.size, opt_.chunking.max) << rel;
      packs.insert(c.id);
      if (c.offset > 0 && some_small.empty()) some_small = rel;
      // Extents point into the pack at the file's offset.
      auto ext = cache->Extents(*cp, *n, 0, item.data.size(), 4);
      ASSERT_TRUE(ext.has_value());
      ASSERT_EQ(ext->size(), 1u);
      EXPECT_EQ((*ext)[0].offset, c.offset);
      std::string piece(c.size, '\0');
      ASSERT_EQ(::pread((*ext)[0].fd, piece.data(), c.size, off_t(c.offset)), ssize_t(c.size));
      EXPECT_EQ(piece, item.data) << rel;
    }
    ASSERT_FALSE(some_small.empty());
    // Full packs: no more chunk files than needed (each pack is more than half full, except
    // possibly the last), far fewer than files.
    const uint64_t max = opt_.chunking.max;
    EXPECT_GE(packs.size(), (small_bytes + max - 1) / max);
    EXPECT_LE(packs.size(), 2 * small_bytes / max + 1);
    const size_t large_chunks = m.chunks(*test::NodeOf(m, "large")).size();
    EXPECT_EQ(ChunkFiles(), packs.size() + large_chunks);
    EXPECT_EQ(test::Diff(*cache, *cp, t), "");
    // The same path again (another name, same files): the same packs, nothing new on disk.
    Add(*cache, test::MakeInfo(Base(2)), t);
    EXPECT_EQ(ChunkFiles(), packs.size() + large_chunks);
  }
  {
    auto cache = Open();  // a new process: every pack is verified by its first read
    auto cp = cache->Find(info.store_path.hash_part());
    ASSERT_NE(cp, nullptr);
    EXPECT_EQ(test::Diff(*cache, *cp, t), "");
  }
  // Damage one small file's bytes in its pack: reading another file of the same pack (first
  // read in this process) detects it and drops the path.
  auto cache = Open();
  auto cp = cache->Find(info.store_path.hash_part());
  const PathMeta& m = *cp->meta;
  const ChunkRef victim = m.chunks(*test::NodeOf(m, some_small))[0];
  std::string other;
  for (const auto& [rel, item] : t) {
    auto n = test::NodeOf(m, rel);
    if (rel != some_small && item.type == PathMeta::Type::kRegular && !item.data.empty() &&
        m.chunks(*n)[0].id == victim.id)
      other = rel;
  }
  ASSERT_FALSE(other.empty());
  std::string file =
      opt_.dir + "/chunks/" + victim.id.ToHex().substr(0, 2) + "/" + victim.id.ToHex();
  fs::permissions(file, fs::perms::owner_write, fs::perm_options::add);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(victim.offset);
    f.put(char(~t[some_small].data[0]));
  }
  EXPECT_THROW(test::ReadAll(*cache, *cp, *test::NodeOf(m, other)), IntegrityError);
  EXPECT_EQ(cache->Find(info.store_path.hash_part()), nullptr);
  bool logged = false;
  for (const auto& l : log_) logged |= l.find(victim.id.ToHex()) != std::string::npos;
  EXPECT_TRUE(logged);
}

TEST_F(StoreCacheTest, SharedChunksSurviveEvictionOfOnePath) {
  auto cache = Open();
  Tree t = SimpleTree(rng_, 100000);
  auto a = Add(*cache, test::MakeInfo(Base(1)), t);
  auto b = Add(*cache, test::MakeInfo(Base(2)), t);
  size_t chunks = ChunkFiles();
  auto before = cache->Stats();
  a.reset();
  // b is held: only a is evictable.
  cache->Evict(0);
  EXPECT_EQ(cache->Find(test::HashPartFor(1)), nullptr);
  EXPECT_EQ(ChunkFiles(), chunks);
  EXPECT_EQ(test::Diff(*cache, *b, t), "");
  EXPECT_EQ(cache->Stats().unique_bytes, before.unique_bytes);
}

TEST_F(StoreCacheTest, ByteRangesAcrossChunksAndAtEof) {
  auto cache = Open();
  std::string data = test::RandomBytes(rng_, 300001);
  Tree t;
  t[""] = Item{PathMeta::Type::kRegular, false, data};  // a single-file store path
  auto cp = Add(*cache, test::MakeInfo(Base(1)), t);
  ASSERT_GT(cp->meta->chunks(0).size(), 20u);
  auto offs = cp->meta->chunk_offsets(0);
  std::vector<uint64_t> interesting = {0, 1, data.size() - 1, data.size(), data.size() + 5};
  for (size_t i = 1; i < offs.size(); ++i) {
    interesting.push_back(offs[i] - 1);
    interesting.push_back(offs[i]);
  }
  for (uint64_t off : interesting) {
    for (size_t len : {size_t(1), size_t(2), size_t(4095), size_t(20000), size_t(400000)}) {
      std::string buf(len, '\0');
      size_t n = cache->Read(*cp, 0, off, buf);
      size_t want = off >= data.size() ? 0 : std::min<size_t>(len, data.size() - off);
      ASSERT_EQ(n, want) << off << "+" << len;
      ASSERT_EQ(buf.substr(0, n), data.substr(std::min<size_t>(off, data.size()), n));
    }
  }
  for (int i = 0; i < 2000; ++i) {
    uint64_t off = rng_() % data.size();
    size_t len = 1 + rng_() % 50000;
    std::string buf(len, '\0');
    size_t n = cache->Read(*cp, 0, off, buf);
    ASSERT_EQ(buf.substr(0, n), data.substr(off, len));
  }
  std::string empty;
  EXPECT_EQ(cache->Read(*cp, 0, 0, std::span<char>(empty)), 0u);
  EXPECT_THROW(cache->Read(*cp, 7, 0, std::span<char>(empty)), Error);
}

// Extents (for splicing) name the same bytes Read returns, only for chunks verified in this
// process: after a restart the first Read of a chunk verifies it, then it is handed out.
TEST_F(StoreCacheTest, ExtentsMatchReadAndNeedVerifiedChunks) {
  std::string data = test::RandomBytes(rng_, 300001);
  Tree t;
  t[""] = Item{PathMeta::Type::kRegular, false, data};
  NarInfo info = test::MakeInfo(Base(1));
  auto bytes_of = [](const std::vector<StoreCache::Extent>& ext) {
    std::string out;
    for (const auto& e : ext) {
      std::string piece(e.size, '\0');
      EXPECT_EQ(::pread(e.fd, piece.data(), e.size, off_t(e.offset)), ssize_t(e.size));
      out += piece;
    }
    return out;
  };
  {
    auto cache = Open();
    auto cp = Add(*cache, info, t);  // written here: verified
    for (int i = 0; i < 500; ++i) {
      uint64_t off = rng_() % (data.size() + 10);
      size_t len = 1 + rng_() % 60000;
      auto ext = cache->Extents(*cp, 0, off, len, 1000);
      ASSERT_TRUE(ext.has_value());
      size_t want = off >= data.size() ? 0 : std::min<size_t>(len, data.size() - off);
      ASSERT_EQ(bytes_of(*ext), data.substr(std::min<size_t>(off, data.size()), want));
    }
    ASSERT_GT(cp->meta->chunks(0).size(), 3u);
    EXPECT_FALSE(cache->Extents(*cp, 0, 0, data.size(), 2).has_value()) << "too many extents";
    EXPECT_THROW(cache->Extents(*cp, 7, 0, 10, 4), Error);
  }
  auto cache = Open();  // a new process: nothing verified yet
  auto cp = cache->Find(info.store_path.hash_part());
  ASSERT_NE(cp, nullptr);
  EXPECT_FALSE(cache->Extents(*cp, 0, 0, 100, 1000).has_value());
  std::string buf(100, '\0');
  ASSERT_EQ(cache->Read(*cp, 0, 0, buf), 100u);  // verifies the first chunk
  auto ext = cache->Extents(*cp, 0, 0, 100, 1000);
  ASSERT_TRUE(ext.has_value());
  EXPECT_EQ(bytes_of(*ext), data.substr(0, 100));
  opt_.verify_always = true;
  cache.reset();
  cache = Open();
  cp = cache->Find(info.store_path.hash_part());
  ASSERT_EQ(cache->Read(*cp, 0, 0, buf), 100u);
  EXPECT_FALSE(cache->Extents(*cp, 0, 0, 100, 1000).has_value()) << "verify_always: never";
}

// A verified chunk file cut short afterwards (damage from outside) is not handed out as an
// extent (a short splice would look like the end of the file to the kernel): Read() finds it,
// drops the path and throws, so that it is fetched again.
TEST_F(StoreCacheTest, ChunkCutShortAfterVerificationIsNotAnExtent) {
  std::string data = test::RandomBytes(rng_, 300001);
  Tree t;
  t[""] = Item{PathMeta::Type::kRegular, false, data};
  auto cache = Open();
  auto cp = Add(*cache, test::MakeInfo(Base(1)), t);  // written here: verified
  ASSERT_TRUE(cache->Extents(*cp, 0, 0, 1000, 1000).has_value());
  const ChunkRef& c = cp->meta->chunks(0)[0];
  const std::string file = opt_.dir + "/chunks/" + c.id.ToHex().substr(0, 2) + "/" + c.id.ToHex();
  fs::resize_file(file, c.size / 2);
  EXPECT_FALSE(cache->Extents(*cp, 0, 0, c.size, 1000).has_value());
  EXPECT_TRUE(cache->Extents(*cp, 0, 0, c.size / 2 - c.offset, 1000).has_value())
      << "what is still there is";
  std::string buf(c.size, '\0');
  EXPECT_THROW(cache->Read(*cp, 0, 0, buf), IntegrityError);
  EXPECT_EQ(cache->Find(test::HashPartFor(1)), nullptr);
}

TEST_F(StoreCacheTest, OpenChunkDescriptorsAreBounded) {
  opt_.max_open_chunks = 32;
  auto cache = Open();
  auto fds = [] {
    return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator());
  };
  std::string data = test::RandomBytes(rng_, 600000);
  Tree t;
  t[""] = Item{PathMeta::Type::kRegular, false, data};
  auto cp = Add(*cache, test::MakeInfo(Base(1)), t);
  ASSERT_GT(cp->meta->chunks(0).size(), 64u);
  auto before = fds();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(test::ReadAll(*cache, *cp, 0, 7000), data);
  EXPECT_LE(fds(), before + 32);
}

TEST_F(StoreCacheTest, SecondOpenFailsWithHolderPid) {
  auto cache = Open();
  try {
    Open();
    FAIL() << "second Open succeeded";
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("pid " + std::to_string(::getpid())), std::string::npos) << msg;
    EXPECT_NE(msg.find(opt_.dir), std::string::npos) << msg;
  }
  EXPECT_THROW(Fsck(opt_, [](std::string_view) {}), ConfigError);
  // Another process is refused too.
  pid_t child = fork();
  if (child == 0) {
    try {
      StoreCache::Open(opt_);
      _exit(1);
    } catch (const ConfigError&) {
      _exit(0);
    }
    _exit(2);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  cache.reset();
  EXPECT_NO_THROW(Open());  // released on close
}

TEST_F(StoreCacheTest, StableIds) {
  Tree t = SimpleTree(rng_, 1000);
  auto p1 = StorePath::FromBaseName(Base(1));
  auto p2 = StorePath::FromBaseName(Base(2));
  uint64_t id1, id2;
  {
    auto cache = Open();
    id1 = cache->IdFor(p1);
    id2 = cache->IdFor(p2);
    EXPECT_NE(id1, 0u);
    EXPECT_NE(id1, id2);
    EXPECT_EQ(cache->IdFor(p1), id1);
    EXPECT_EQ(cache->FindById(id1), nullptr);  // id known, path not cached
    auto cp = Add(*cache, test::MakeInfo(Base(1)), t);
    EXPECT_EQ(cp->id, id1);
    EXPECT_EQ(cache->FindById(id1), cp);
    cp.reset();
    cache->Evict(0);
    EXPECT_EQ(cache->FindById(id1), nullptr);
    EXPECT_EQ(cache->IdFor(p1), id1);  // survives eviction
  }
  auto cache = Open();
  EXPECT_EQ(cache->IdFor(p2), id2);  // survives restart
  EXPECT_EQ(cache->IdFor(p1), id1);
  auto p3 = StorePath::FromBaseName(Base(3));
  uint64_t id3 = cache->IdFor(p3);
  EXPECT_NE(id3, id1);
  EXPECT_NE(id3, id2);
  auto cp = Add(*cache, test::MakeInfo(Base(1)), t);  // re-fetch after eviction: same id
  EXPECT_EQ(cp->id, id1);
  EXPECT_EQ(cache->FindById(id1), cp);
  EXPECT_EQ(cache->FindById(9999), nullptr);
}

TEST_F(StoreCacheTest, TornIdsFileIsRepaired) {
  uint64_t id1;
  {
    auto cache = Open();
    id1 = cache->IdFor(StorePath::FromBaseName(Base(1)));
  }
  {
    std::ofstream f(opt_.dir + "/ids", std::ios::app);
    f << "0123456789abcdfg";  // half a record, as a crash mid-append leaves it
  }
  auto cache = Open();
  EXPECT_EQ(cache->IdFor(StorePath::FromBaseName(Base(1))), id1);
  uint64_t id2 = cache->IdFor(StorePath::FromBaseName(Base(2)));
  EXPECT_EQ(id2, id1 + 1);
}

// Paths of ~`size` bytes each; budget fits about three.
TEST_F(StoreCacheTest, EvictsLeastRecentlyUsedFirst) {
  opt_.chunking = ChunkerParams::Default();  // one chunk per file: sizes easy to predict
  opt_.max_bytes = 500 * 1024;
  opt_.high_watermark = 0.9;
  opt_.low_watermark = 0.6;
  auto cache = Open();
  std::vector<std::string> evicted;
  cache->SetEvictionListener([&](const CachedPath& cp) {
    evicted.push_back(std::string(cp.path.hash_part()));
    cache->Stats();  // called outside the cache's locks: must not deadlock
  });
  for (int i = 1; i <= 3; ++i) Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 100000));
  EXPECT_TRUE(evicted.empty());
  ASSERT_NE(cache->Find(test::HashPartFor(1)), nullptr);  // 1 becomes most recently used
  Add(*cache, test::MakeInfo(Base(4)), SimpleTree(rng_, 100000));
  // Over 90%: evict LRU (2, then 3) down to 60%.
  ASSERT_GE(evicted.size(), 1u);
  EXPECT_EQ(evicted[0], test::HashPartFor(2));
  if (evicted.size() > 1) {
    EXPECT_EQ(evicted[1], test::HashPartFor(3));
  }
  EXPECT_NE(cache->Find(test::HashPartFor(1)), nullptr);
  EXPECT_NE(cache->Find(test::HashPartFor(4)), nullptr);
  EXPECT_EQ(cache->Find(test::HashPartFor(2)), nullptr);
  EXPECT_LE(cache->BytesUsed(), uint64_t(0.6 * opt_.max_bytes));
  EXPECT_EQ(cache->Stats().evictions, evicted.size());
}

TEST_F(StoreCacheTest, FreeSpaceFloorEvictsEvenPathsInUse) {
  opt_.min_free_bytes = uint64_t(1) << 62;  // never satisfiable: every commit evicts the others
  auto cache = Open();
  // Below the floor the eviction guard gives way: everything "in use" goes all the same.
  std::vector<std::string> probed;
  cache->SetEvictionGuard(
      [](uint64_t) { return true; },
      [&](const CachedPath& cp) { probed.push_back(std::string(cp.path.hash_part())); });
  for (int i = 1; i <= 3; ++i) {
    Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 1000));
    auto left = cache->List();
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].hash_part(), test::HashPartFor(i));
  }
  EXPECT_EQ(cache->Stats().evictions, 2u);
  EXPECT_TRUE(probed.empty());  // evicted, so not probed
}

TEST_F(StoreCacheTest, LruOrderSurvivesRestart) {
  {
    auto cache = Open();
    for (int i = 1; i <= 3; ++i) {
      Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 1000));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // distinct mtimes
    }
  }
  std::vector<std::string> evicted;
  auto cache = Open();
  cache->SetEvictionListener(
      [&](const CachedPath& cp) { evicted.push_back(std::string(cp.path.hash_part())); });
  cache->Evict(cache->BytesUsed() - 1);
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0], test::HashPartFor(1));
}

// The listing listener sees every change of List(), after it happened, outside the cache's
// locks; the path a commit adds is listed before the eviction that commit starts.
TEST_F(StoreCacheTest, ListingListenerSeesCommitsAndEvictions) {
  opt_.max_bytes = 1 << 20;
  auto cache = Open();
  std::vector<size_t> listed;  // List().size() at each call
  cache->SetListingListener([&] { listed.push_back(cache->List().size()); });
  Add(*cache, test::MakeInfo(Base(1)), SimpleTree(rng_, 100000));
  ASSERT_EQ(listed, std::vector<size_t>{1});
  Add(*cache, test::MakeInfo(Base(1)), SimpleTree(rng_, 100000));  // same path again
  ASSERT_EQ(listed, (std::vector<size_t>{1, 1}));
  // Add paths until one takes the cache over its budget: that commit calls the listener with
  // its path listed, then once more after the eviction it started.
  bool evicted = false;
  for (int i = 2; i < 40 && !evicted; ++i) {
    const size_t before = listed.size(), paths = cache->List().size();
    Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 100000));
    ASSERT_GE(listed.size(), before + 1);
    EXPECT_EQ(listed[before], paths + 1);
    if (listed.size() == before + 2) {
      evicted = true;
      EXPECT_LT(listed[before + 1], paths + 1);
      EXPECT_EQ(listed[before + 1], cache->List().size());
    } else {
      EXPECT_EQ(listed.size(), before + 1);
    }
  }
  ASSERT_TRUE(evicted);
  const size_t before = listed.size();
  cache->Evict(0);
  ASSERT_EQ(listed.size(), before + 1);
  EXPECT_EQ(listed.back(), 0u);
  cache->Evict(0);  // nothing left to evict: no change, no call
  EXPECT_EQ(listed.size(), before + 1);
  cache->SetListingListener(nullptr);
  Add(*cache, test::MakeInfo(Base(50)), SimpleTree(rng_, 1000));
  EXPECT_EQ(listed.size(), before + 1);
}

TEST_F(StoreCacheTest, PinsProtectTheirClosure) {
  opt_.pins = {Base(1)};
  auto cache = Open();
  // 1 -> 2 -> 3 (closure of the pin), 4 unrelated.
  Add(*cache, test::MakeInfo(Base(3)), SimpleTree(rng_, 1000));
  Add(*cache, test::MakeInfo(Base(2), {Base(3)}), SimpleTree(rng_, 1000));
  Add(*cache, test::MakeInfo(Base(1), {Base(2), Base(1)}), SimpleTree(rng_, 1000));
  Add(*cache, test::MakeInfo(Base(4)), SimpleTree(rng_, 1000));
  cache->Evict(0);
  auto left = cache->List();
  ASSERT_EQ(left.size(), 3u);
  for (int i = 1; i <= 3; ++i) EXPECT_NE(cache->Find(test::HashPartFor(i)), nullptr) << i;
  EXPECT_EQ(cache->Find(test::HashPartFor(4)), nullptr);
}

TEST_F(StoreCacheTest, OpenFilesAndHoldersProtect) {
  auto cache = Open();
  auto a = Add(*cache, test::MakeInfo(Base(1)), SimpleTree(rng_, 1000));
  Add(*cache, test::MakeInfo(Base(2)), SimpleTree(rng_, 1000));
  a->open_files = 1;
  std::weak_ptr<CachedPath> weak = a;
  a.reset();  // only the open-file count protects it now
  cache->Evict(0);
  EXPECT_NE(cache->Find(test::HashPartFor(1)), nullptr);
  EXPECT_EQ(cache->Find(test::HashPartFor(2)), nullptr);
  auto held = cache->Find(test::HashPartFor(1));
  held->open_files = 0;
  cache->Evict(0);  // still held by `held` (a reader in progress)
  EXPECT_NE(cache->Find(test::HashPartFor(1)), nullptr);
  held.reset();
  cache->Evict(0);
  EXPECT_EQ(cache->Find(test::HashPartFor(1)), nullptr);
  EXPECT_TRUE(weak.expired());
}

TEST_F(StoreCacheTest, EvictionGuardProbesPathsInUseInsteadOfEvictingThem) {
  auto cache = Open();
  std::vector<uint64_t> ids;
  for (int i = 1; i <= 3; ++i) {
    ids.push_back(Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 1000))->id);
  }
  std::set<uint64_t> in_use = {ids[0], ids[1]};  // what "the kernel" still references
  std::vector<std::string> evicted, probed;
  cache->SetEvictionListener(
      [&](const CachedPath& cp) { evicted.push_back(std::string(cp.path.hash_part())); });
  cache->SetEvictionGuard([&](uint64_t id) { return in_use.count(id) > 0; },
                          [&](const CachedPath& cp) {
                            probed.push_back(std::string(cp.path.hash_part()));
                            cache->Stats();  // called outside the cache's locks
                          },
                          /*probe_interval_s=*/3600);
  cache->Evict(0);
  EXPECT_EQ(evicted, std::vector<std::string>{test::HashPartFor(3)});
  EXPECT_EQ(probed, (std::vector<std::string>{test::HashPartFor(1), test::HashPartFor(2)}));
  EXPECT_NE(cache->Find(test::HashPartFor(1)), nullptr);
  EXPECT_NE(cache->Find(test::HashPartFor(2)), nullptr);
  // Probed once per interval: a second eviction does not probe them again.
  cache->Evict(0);
  EXPECT_EQ(probed.size(), 2u);
  // Once the referrer let go of one, eviction takes it.
  in_use.erase(ids[0]);
  cache->Evict(0);
  EXPECT_EQ(evicted.back(), test::HashPartFor(1));
  EXPECT_NE(cache->Find(test::HashPartFor(2)), nullptr);
  // Without a guard everything unprotected goes.
  cache->SetEvictionGuard(nullptr, nullptr);
  cache->Evict(0);
  EXPECT_EQ(cache->Find(test::HashPartFor(2)), nullptr);
}

TEST_F(StoreCacheTest, EvictionGuardProbesOnlyWhatTheTargetNeeds) {
  opt_.chunking = ChunkerParams::Default();
  auto cache = Open();
  for (int i = 1; i <= 4; ++i) Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 100000));
  std::vector<std::string> probed;
  cache->SetEvictionGuard(
      [](uint64_t) { return true; },
      [&](const CachedPath& cp) { probed.push_back(std::string(cp.path.hash_part())); });
  // Freeing about one path's worth: only the least recently used path is probed.
  cache->Evict(cache->BytesUsed() - 50000);
  EXPECT_EQ(probed, std::vector<std::string>{test::HashPartFor(1)});
  EXPECT_EQ(cache->List().size(), 4u);
}

TEST_F(StoreCacheTest, EvictIfOverTakesWhatWasInUseAtCommit) {
  opt_.chunking = ChunkerParams::Default();
  opt_.max_bytes = 500 * 1024;
  opt_.high_watermark = 0.9;
  opt_.low_watermark = 0.6;
  auto cache = Open();
  bool held = true;  // "the kernel" holds every path while they are added
  cache->SetEvictionGuard([&](uint64_t) { return held; }, [](const CachedPath&) {});
  for (int i = 1; i <= 5; ++i) Add(*cache, test::MakeInfo(Base(i)), SimpleTree(rng_, 100000));
  ASSERT_GT(cache->BytesUsed(), uint64_t(0.9 * opt_.max_bytes));
  EXPECT_EQ(cache->Stats().evictions, 0u);
  cache->EvictIfOver();  // still held
  EXPECT_EQ(cache->Stats().evictions, 0u);
  held = false;  // idle now
  cache->EvictIfOver();
  EXPECT_GT(cache->Stats().evictions, 0u);
  EXPECT_LE(cache->BytesUsed(), uint64_t(0.6 * opt_.max_bytes));
  const uint64_t evictions = cache->Stats().evictions;
  cache->EvictIfOver();  // under the high watermark: nothing to do
  EXPECT_EQ(cache->Stats().evictions, evictions);
}

TEST_F(StoreCacheTest, PathLargerThanBudgetIsServed) {
  opt_.max_bytes = 64 * 1024;
  auto cache = Open();
  Add(*cache, test::MakeInfo(Base(1)), SimpleTree(rng_, 5000));
  Tree big = SimpleTree(rng_, 500000);
  auto cp = Add(*cache, test::MakeInfo(Base(2)), big);
  EXPECT_EQ(cache->Find(test::HashPartFor(1)), nullptr);  // everything else went first
  ASSERT_NE(cache->Find(test::HashPartFor(2)), nullptr);
  EXPECT_EQ(test::Diff(*cache, *cp, big), "");
  EXPECT_GT(cache->BytesUsed(), opt_.max_bytes);
  bool warned = false;
  for (const auto& l : log_) warned |= l.find("over its budget") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST_F(StoreCacheTest, CorruptChunkThrowsAndDropsPath) {
  Tree t = SimpleTree(rng_, 100000);
  {
    auto cache = Open();
    Add(*cache, test::MakeInfo(Base(1)), t);
  }
  // Flip a byte in one chunk of bin/prog.
  auto cache = Open();
  auto cp = cache->Find(test::HashPartFor(1));
  uint32_t prog = *test::NodeOf(*cp->meta, "bin/prog");
  const ChunkRef& c = cp->meta->chunks(prog)[2];
  std::string file = opt_.dir + "/chunks/" + c.id.ToHex().substr(0, 2) + "/" + c.id.ToHex();
  fs::permissions(file, fs::perms::owner_write, fs::perm_options::add);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.put('\x5a' ^ t["bin/prog"].data[cp->meta->chunk_offsets(prog)[2] + 10]);
  }
  std::string buf(100, '\0');
  int listing_changes = 0;
  cache->SetListingListener([&] { ++listing_changes; });
  // Chunk 0 reads fine; the corrupt one throws.
  EXPECT_EQ(cache->Read(*cp, prog, 0, buf), 100u);
  EXPECT_EQ(listing_changes, 0);
  EXPECT_THROW(cache->Read(*cp, prog, cp->meta->chunk_offsets(prog)[2], buf), IntegrityError);
  EXPECT_EQ(listing_changes, 1);  // the path was dropped
  EXPECT_EQ(cache->Find(test::HashPartFor(1)), nullptr);
  EXPECT_EQ(cache->Stats().refetches, 1u);
  EXPECT_FALSE(fs::exists(file));
  EXPECT_FALSE(fs::exists(opt_.dir + "/paths/" + test::HashPartFor(1)));
  // Fetching it again works and reads correctly.
  cp.reset();
  auto again = Add(*cache, test::MakeInfo(Base(1)), t);
  EXPECT_EQ(test::Diff(*cache, *again, t), "");
}

TEST_F(StoreCacheTest, VerifyAlwaysCatchesCorruptionAfterFirstRead) {
  opt_.verify_always = true;
  Tree t = SimpleTree(rng_, 10000);
  auto cache = Open();
  auto cp = Add(*cache, test::MakeInfo(Base(1)), t);
  uint32_t prog = *test::NodeOf(*cp->meta, "bin/prog");
  EXPECT_EQ(test::ReadAll(*cache, *cp, prog), t["bin/prog"].data);
  const ChunkRef& c = cp->meta->chunks(prog)[0];
  std::string file = opt_.dir + "/chunks/" + c.id.ToHex().substr(0, 2) + "/" + c.id.ToHex();
  fs::permissions(file, fs::perms::owner_write, fs::perm_options::add);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.put(char(~t["bin/prog"].data[0]));
  }
  EXPECT_THROW(test::ReadAll(*cache, *cp, prog), IntegrityError);
}

TEST_F(StoreCacheTest, OrphansCollectedOnReopen) {
  Tree t = SimpleTree(rng_, 50000);
  {
    auto cache = Open();
    Add(*cache, test::MakeInfo(Base(1)), t);
  }
  size_t good_chunks = ChunkFiles();
  // What a crash leaves: temporaries, a chunk no metadata references, a metadata temp.
  std::ofstream(opt_.dir + "/tmp/0123.99.1") << "partial";
  std::ofstream(opt_.dir + "/tmp/" + test::HashPartFor(5) + ".meta.99.2") << "partial";
  std::string orphan = "orphan chunk data";
  std::string hex = ChunkId::Of(orphan).ToHex();
  fs::create_directories(opt_.dir + "/chunks/" + hex.substr(0, 2));
  std::ofstream(opt_.dir + "/chunks/" + hex.substr(0, 2) + "/" + hex) << orphan;
  auto cache = Open();
  EXPECT_TRUE(fs::is_empty(opt_.dir + "/tmp"));
  EXPECT_EQ(ChunkFiles(), good_chunks);
  auto cp = cache->Find(test::HashPartFor(1));
  ASSERT_NE(cp, nullptr);
  EXPECT_EQ(test::Diff(*cache, *cp, t), "");
}

TEST_F(StoreCacheTest, FsckRepairsAndReports) {
  Tree t = SimpleTree(rng_, 60000);
  {
    auto cache = Open();
    for (int i = 1; i <= 4; ++i) {
      Tree ti = t;
      ti["id"] = Item{PathMeta::Type::kRegular, false, test::RandomBytes(rng_, 3000 + i)};
      Add(*cache, test::MakeInfo(Base(i)), ti);
    }
  }
  std::vector<std::string> report;
  auto rep = [&](std::string_view l) { report.emplace_back(l); };
  ASSERT_TRUE(Fsck(opt_, rep));
  EXPECT_TRUE(report.empty()) << report[0];
  // Damage: path 1's metadata is corrupt; a chunk only path 2 uses is corrupt; a chunk only
  // path 3 uses is missing. Path 4 is fine.
  auto meta_of = [&](int i) {
    std::ifstream f(opt_.dir + "/paths/" + test::HashPartFor(i), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  auto only_chunk = [&](int i) {
    auto cache = Open();
    auto cp = cache->Find(test::HashPartFor(i));
    auto c = cp->meta->chunks(*test::NodeOf(*cp->meta, "id"))[0].id.ToHex();
    return opt_.dir + "/chunks/" + c.substr(0, 2) + "/" + c;
  };
  std::string c2 = only_chunk(2), c3 = only_chunk(3);
  std::string m1 = meta_of(1);
  fs::permissions(opt_.dir + "/paths/" + test::HashPartFor(1), fs::perms::owner_write,
                  fs::perm_options::add);
  {
    std::fstream f(opt_.dir + "/paths/" + test::HashPartFor(1),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(long(m1.size() / 2));
    f.put(char(~m1[m1.size() / 2]));
  }
  fs::permissions(c2, fs::perms::owner_write, fs::perm_options::add);
  std::ofstream(c2, std::ios::in | std::ios::out | std::ios::binary).put('!');
  fs::remove(c3);
  // Strays: a file that is not a chunk in a chunk directory (removed), and a directory that is
  // not a chunk directory (reported, left alone).
  const std::string stray = fs::path(c2).parent_path().string() + "/stray";
  std::ofstream(stray).put('x');
  fs::create_directory(opt_.dir + "/chunks/zz");
  report.clear();
  EXPECT_TRUE(Fsck(opt_, rep));
  std::string all;
  for (const auto& l : report) all += l + "\n";
  EXPECT_NE(all.find("removing unexpected file " + stray), std::string::npos) << all;
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_NE(all.find("unexpected entry " + opt_.dir + "/chunks/zz (left alone)"), std::string::npos)
      << all;
  fs::remove(opt_.dir + "/chunks/zz");
  EXPECT_NE(all.find(test::HashPartFor(1)), std::string::npos) << all;
  EXPECT_NE(all.find(c2), std::string::npos) << all;
  EXPECT_NE(all.find(test::HashPartFor(2)), std::string::npos) << all;
  EXPECT_NE(all.find(test::HashPartFor(3)), std::string::npos) << all;
  EXPECT_EQ(all.find(test::HashPartFor(4)), std::string::npos) << all;
  report.clear();
  EXPECT_TRUE(Fsck(opt_, rep));
  EXPECT_TRUE(report.empty()) << report[0];
  auto cache = Open();
  auto left = cache->List();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].hash_part(), test::HashPartFor(4));
  auto cp = cache->Find(test::HashPartFor(4));
  EXPECT_EQ(test::Diff(*cache, *cp, t).find("missing"), std::string::npos);
}

TEST_F(StoreCacheTest, ConcurrentReadersWhileWriting) {
  opt_.max_bytes = 3 << 20;
  auto cache = Open();
  std::vector<Tree> trees;
  for (int i = 0; i < 8; ++i) trees.push_back(SimpleTree(rng_, 100000 + i * 1000));
  for (int i = 0; i < 4; ++i) Add(*cache, test::MakeInfo(Base(i)), trees[i]);
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(r);
      while (!stop) {
        int i = int(rng() % 8);
        auto cp = cache->Find(test::HashPartFor(i));
        if (!cp) continue;
        if (!test::Diff(*cache, *cp, trees[i]).empty()) ++bad;
        ++reads;
      }
    });
  }
  for (int round = 0; round < 3; ++round)
    for (int i = 4; i < 8; ++i) Add(*cache, test::MakeInfo(Base(i)), trees[i]);
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_GT(reads, 0);
}

TEST_F(StoreCacheTest, ConcurrentWritersOfTheSameAndSharedChunks) {
  auto cache = Open();
  Tree shared = SimpleTree(rng_, 80000);
  std::vector<std::thread> writers;
  std::atomic<int> bad{0};
  for (int w = 0; w < 3; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 15; ++i) {
        // Every writer commits path 1 (same contents) and its own path sharing all chunks.
        auto a = Add(*cache, test::MakeInfo(Base(1)), shared);
        auto b = Add(*cache, test::MakeInfo(Base(10 + w)), shared);
        if (!test::Diff(*cache, *a, shared).empty() || !test::Diff(*cache, *b, shared).empty())
          ++bad;
        if (i % 5 == 0) cache->Evict(0);
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(ChunkFiles(), cache->Stats().chunks);
  cache.reset();
  std::vector<std::string> report;
  EXPECT_TRUE(Fsck(opt_, [&](std::string_view l) { report.emplace_back(l); }));
  EXPECT_TRUE(report.empty()) << report[0];
}

}  // namespace
}  // namespace nls
