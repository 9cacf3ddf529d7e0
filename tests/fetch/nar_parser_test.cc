#include "fetch/nar_parser.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "fetch/error.h"
#include "fetch/nar_writer.h"
#include "tests/fetch/nar_test_util.h"

namespace nls {
namespace {

using testing::FeedChunked;
using testing::FeedRandom;
using testing::RecordingSink;

std::string Padded(std::string_view s) {
  std::string out(s);
  out.append((8 - s.size() % 8) % 8, '\0');
  return out;
}

// A tree with every kind of node, empty files and directories, and names whose byte order
// differs from a path-wise order ("a-b" vs "a" whose child is "b").
NarTree SampleTree() {
  std::map<std::string, NarTree> sub;
  sub["b"] = NarTree::File("inner", false);
  std::map<std::string, NarTree> root;
  root["a"] = NarTree::Directory(std::move(sub));
  root["a-b"] = NarTree::File("dash", true);
  root["empty-dir"] = NarTree::Directory();
  root["empty-file"] = NarTree::File("");
  root["link"] = NarTree::Symlink("../some/where");
  root["long"] = NarTree::File(std::string(1000003, 'x'), true);
  root["\xc3\xa9t\xc3\xa9 space"] = NarTree::File("utf8 name");
  return NarTree::Directory(std::move(root));
}

std::vector<std::string> Events(std::string_view nar, size_t chunk = 0) {
  RecordingSink sink;
  NarParser parser(sink);
  FeedChunked(parser, nar, chunk);
  return sink.events;
}

// Parses `nar` whole, expecting a FormatError whose message contains `reason` (and, when given,
// "byte offset N").
void ExpectRejected(const std::string& nar, const std::string& reason,
                    std::optional<uint64_t> offset = std::nullopt) {
  for (size_t chunk : {size_t{0}, size_t{1}, size_t{7}}) {
    RecordingSink sink;
    NarParser parser(sink, "/nix/store/test");
    try {
      FeedChunked(parser, nar, chunk);
      ADD_FAILURE() << "accepted a NAR that should fail with: " << reason;
    } catch (const FormatError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(reason), std::string::npos) << msg;
      EXPECT_NE(msg.find("/nix/store/test"), std::string::npos) << msg;
      if (offset) {
        EXPECT_NE(msg.find("byte offset " + std::to_string(*offset)), std::string::npos) << msg;
      }
    }
  }
}

TEST(NarParserTest, NixOneFileVector) {
  // `printf 'hello\n' > f; nix-store --dump f` is 120 bytes; sha256 from nix-hash (Nix 2.8).
  std::string nar = WriteNar(NarTree::File("hello\n"));
  ASSERT_EQ(nar.size(), 120u);
  std::string expected = Padded(std::string("\x0d\0\0\0\0\0\0\0", 8) + "nix-archive-1");
  EXPECT_EQ(nar.substr(0, 24), expected);
  RecordingSink sink;
  Hash h = ParseNar(nar, sink);
  EXPECT_EQ(h.ToNix32(), "04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw");
  EXPECT_EQ(sink.events, (std::vector<std::string>{"reg '' x=0 size=6 off=96", "data 'hello\n'"}));
  // The executable variant (`chmod +x f`).
  RecordingSink sink2;
  EXPECT_EQ(ParseNar(WriteNar(NarTree::File("hello\n", true)), sink2).ToNix32(),
            "1yhh619m3cy1mird7f0l7zsmiv9rayqn075zinda2g7rscwn0hv5");
}

TEST(NarParserTest, EventsOfSampleTree) {
  std::string nar = WriteNar(SampleTree());
  std::vector<std::string> ev = Events(nar);
  ASSERT_EQ(ev.size(), 14u);
  EXPECT_EQ(ev[0], "dir ''");
  EXPECT_EQ(ev[1], "dir 'a'");
  EXPECT_EQ(ev[2].substr(0, 24), "reg 'a/b' x=0 size=5 off");
  EXPECT_EQ(ev[3], "data 'inner'");
  EXPECT_EQ(ev[4].substr(0, 24), "reg 'a-b' x=1 size=4 off");
  EXPECT_EQ(ev[6], "dir 'empty-dir'");
  EXPECT_EQ(ev[7].substr(0, 30), "reg 'empty-file' x=0 size=0 of");
  EXPECT_EQ(ev[8], "data ''");
  EXPECT_EQ(ev[9], "sym 'link' -> '../some/where'");
  EXPECT_EQ(ev[10].substr(0, 29), "reg 'long' x=1 size=1000003 o");
  EXPECT_EQ(ev[12].substr(0, 32), "reg '\xc3\xa9t\xc3\xa9 space' x=0 size=9 off");
  // contents_offset points at the contents in the NAR.
  size_t off = std::stoull(ev[3 - 1].substr(ev[2].find("off=") + 4));
  EXPECT_EQ(nar.substr(off, 5), "inner");
}

TEST(NarParserTest, AnyChunkingGivesIdenticalEvents) {
  std::vector<std::string> nars = {WriteNar(SampleTree()), WriteNar(NarTree::File("hello\n")),
                                   WriteNar(NarTree::Symlink("/abs/target")),
                                   WriteNar(NarTree::Directory()),
                                   WriteNar(NarTree::File(std::string(600000, 'q')))};
  for (const std::string& nar : nars) {
    RecordingSink whole;
    Hash h = ParseNar(nar, whole);
    EXPECT_EQ(h, Hash::Of(nar));
    for (size_t chunk : {1, 7, 8, 13, 4096}) {
      if (chunk == 1 && nar.size() > 200000) continue;  // keep the test quick
      RecordingSink sink;
      NarParser parser(sink);
      EXPECT_EQ(FeedChunked(parser, nar, chunk), h) << "chunk " << chunk;
      EXPECT_EQ(sink.events, whole.events) << "chunk " << chunk;
      EXPECT_EQ(parser.bytes_consumed(), nar.size());
    }
    for (uint32_t seed = 1; seed <= 20; ++seed) {
      RecordingSink sink;
      NarParser parser(sink);
      EXPECT_EQ(FeedRandom(parser, nar, seed, seed % 2 ? 17 : 70000), h);
      EXPECT_EQ(sink.events, whole.events) << "seed " << seed;
    }
  }
}

TEST(NarParserTest, OneByteChunkingOfLargeFile) {
  std::string nar = WriteNar(SampleTree());
  RecordingSink whole;
  ParseNar(nar, whole);
  RecordingSink sink;
  NarParser parser(sink);
  FeedChunked(parser, nar, 1);
  EXPECT_EQ(sink.events, whole.events);
}

TEST(NarParserTest, LargePiecesPassThroughWithoutCopy) {
  std::string nar = WriteNar(NarTree::File(std::string(3 * NarParser::kMaxDataPiece + 5, 'z')));
  struct PointerSink : RecordingSink {
    const char* lo = nullptr;
    const char* hi = nullptr;
    bool all_inside = true;
    void RegularData(std::string_view d) override {
      if (d.data() < lo || d.data() + d.size() > hi) all_inside = false;
      RecordingSink::RegularData(d);
    }
  } sink;
  sink.lo = nar.data();
  sink.hi = nar.data() + nar.size();
  ParseNar(nar, sink);
  EXPECT_TRUE(sink.all_inside);
  EXPECT_EQ(sink.max_piece, NarParser::kMaxDataPiece);
}

TEST(NarParserTest, EveryProperPrefixIsRejected) {
  std::string nar = WriteNar(SampleTree());
  nar = WriteNar(NarTree::Directory({{"f", NarTree::File("abc", true)},
                                     {"l", NarTree::Symlink("t")},
                                     {"d", NarTree::Directory()}}));
  for (size_t n = 0; n < nar.size(); ++n) {
    RecordingSink sink;
    NarParser parser(sink);
    parser.Feed(std::string_view(nar).substr(0, n));
    EXPECT_THROW(parser.Finish(), FormatError) << "prefix " << n;
  }
}

TEST(NarParserTest, TruncationMessageSaysWhatWasExpected) {
  std::string nar = WriteNar(NarTree::File("0123456789"));
  RecordingSink sink;
  NarParser parser(sink, "/nix/store/x-y");
  parser.Feed(std::string_view(nar).substr(0, 100));
  try {
    parser.Finish();
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated NAR"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("6 more bytes"), std::string::npos) << e.what();
  }
}

TEST(NarParserTest, FinishChecksSizeAndHash) {
  std::string nar = WriteNar(SampleTree());
  Hash right = Hash::Of(nar);
  Hash wrong = Hash::Of("something else");
  {
    RecordingSink sink;
    NarParser parser(sink);
    parser.Feed(nar);
    EXPECT_EQ(parser.Finish(nar.size(), right), right);
  }
  {
    RecordingSink sink;
    NarParser parser(sink, "/nix/store/abc-x");
    parser.Feed(nar);
    try {
      parser.Finish(nar.size() + 1, right);
      FAIL();
    } catch (const IntegrityError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("NarSize"), std::string::npos);
      EXPECT_NE(msg.find(std::to_string(nar.size() + 1)), std::string::npos);
      EXPECT_NE(msg.find("/nix/store/abc-x"), std::string::npos);
    }
  }
  {
    RecordingSink sink;
    NarParser parser(sink);
    parser.Feed(nar);
    try {
      parser.Finish(nar.size(), wrong);
      FAIL();
    } catch (const IntegrityError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(wrong.ToNixString()), std::string::npos);
      EXPECT_NE(msg.find(right.ToNixString()), std::string::npos);
    }
  }
}

TEST(NarParserTest, FileOver4GiBSizeIsU64) {
  uint64_t size = (uint64_t{1} << 32) + 9;
  NarWriter w;
  w.Magic().Str("(").Str("type").Str("regular").Str("contents").U64(size);
  RecordingSink sink;
  NarParser parser(sink);
  parser.Feed(w.bytes());
  parser.Feed(std::string(1000, 'a'));
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0], "reg '' x=0 size=4294967305 off=96");
  EXPECT_THROW(parser.Finish(), FormatError);
}

TEST(NarParserTest, SinkExceptionsPropagate) {
  struct Throwing : RecordingSink {
    void CreateSymlink(std::string_view, std::string_view) override {
      throw std::runtime_error("sink says no");
    }
  } sink;
  NarParser parser(sink);
  EXPECT_THROW(parser.Feed(WriteNar(NarTree::Symlink("x"))), std::runtime_error);
}

// ---- Everything Nix refuses ----

// Builds a NAR of a root directory with one entry `name` (a small file).
std::string DirWithEntry(std::string_view name) {
  NarWriter w;
  w.Magic().Str("(").Str("type").Str("directory");
  w.Str("entry").Str("(").Str("name").Str(name).Str("node").Node(NarTree::File("x")).Str(")");
  w.Str(")");
  return w.Take();
}

std::string DirWithEntries(const std::vector<std::string>& names) {
  NarWriter w;
  w.Magic().Str("(").Str("type").Str("directory");
  for (const auto& name : names) {
    w.Str("entry").Str("(").Str("name").Str(name).Str("node").Node(NarTree::File("x")).Str(")");
  }
  w.Str(")");
  return w.Take();
}

TEST(NarParserRejectTest, BadMagic) {
  ExpectRejected(NarWriter().Str("nix-archive-2").Node(NarTree::File("")).Take(), "bad magic", 0);
  ExpectRejected(NarWriter().Str("nix-archive-1-longer").Take(), "magic of 20 bytes", 0);
  ExpectRejected(std::string(16, 'x'), "magic of", 0);
}

TEST(NarParserRejectTest, UnexpectedTags) {
  ExpectRejected(NarWriter().Magic().Str("[").Take(), "expected '(', got '['", 24);
  ExpectRejected(NarWriter().Magic().Str("(").Str("kind").Take(), "expected 'type'", 40);
  ExpectRejected(NarWriter().Magic().Str("(").Str("type").Str("regular").Str("data").Take(),
                 "expected 'executable' or 'contents'", 72);
  ExpectRejected(NarWriter().Magic().Str("(").Str("type").Str("symlink").Str("contents").Take(),
                 "expected 'target'");
  ExpectRejected(NarWriter().Magic().Str("(").Str("type").Str("directory").Str("contents").Take(),
                 "expected 'entry' or ')'");
  ExpectRejected(NarWriter()
                     .Magic()
                     .Str("(")
                     .Str("type")
                     .Str("directory")
                     .Str("entry")
                     .Str("(")
                     .Str("node")
                     .Take(),
                 "expected 'name', got 'node'");
  ExpectRejected(NarWriter()
                     .Magic()
                     .Str("(")
                     .Str("type")
                     .Str("directory")
                     .Str("entry")
                     .Str("(")
                     .Str("name")
                     .Str("a")
                     .Str("name")
                     .Take(),
                 "expected 'node', got 'name'");
  // A second "type", and a node not closed by ")".
  ExpectRejected(NarWriter()
                     .Magic()
                     .Str("(")
                     .Str("type")
                     .Str("symlink")
                     .Str("target")
                     .Str("t")
                     .Str("type")
                     .Take(),
                 "expected ')', got 'type'");
  // Regular file without contents.
  ExpectRejected(NarWriter().Magic().Str("(").Str("type").Str("regular").Str(")").Take(),
                 "expected 'executable' or 'contents', got ')'");
  // Entry not closed.
  ExpectRejected(NarWriter()
                     .Magic()
                     .Str("(")
                     .Str("type")
                     .Str("directory")
                     .Str("entry")
                     .Str("(")
                     .Str("name")
                     .Str("a")
                     .Str("node")
                     .Node(NarTree::File(""))
                     .Str("entry")
                     .Take(),
                 "expected ')', got 'entry'");
}

TEST(NarParserRejectTest, UnknownNodeType) {
  ExpectRejected(NarWriter().Magic().Str("(").Str("type").Str("fifo").Take(),
                 "unknown node type 'fifo'", 56);
}

TEST(NarParserRejectTest, TagTooLong) {
  ExpectRejected(NarWriter().Magic().Str("(").Str(std::string(33, 't')).Take(),
                 "tag of 33 bytes is longer than the limit of 32", 40);
  // A huge length must be refused before anything is buffered.
  ExpectRejected(NarWriter().Magic().U64(uint64_t{1} << 62).Take(),
                 "tag of 4611686018427387904 bytes");
}

TEST(NarParserRejectTest, ExecutableMarker) {
  ExpectRejected(
      NarWriter().Magic().Str("(").Str("type").Str("regular").Str("executable").Str("yes").Take(),
      "executable marker has non-empty value 'yes'");
  ExpectRejected(NarWriter()
                     .Magic()
                     .Str("(")
                     .Str("type")
                     .Str("regular")
                     .Str("contents")
                     .Str("abc")
                     .Str("executable")
                     .Str("")
                     .Take(),
                 "'executable' after 'contents'");
  ExpectRejected(NarWriter()
                     .Magic()
                     .Str("(")
                     .Str("type")
                     .Str("regular")
                     .Str("executable")
                     .Str("")
                     .Str("executable")
                     .Str("")
                     .Take(),
                 "expected 'contents', got 'executable'");
}

TEST(NarParserRejectTest, BadNames) {
  ExpectRejected(DirWithEntry(""), "empty entry name");
  ExpectRejected(DirWithEntry("."), "invalid entry name '.'");
  ExpectRejected(DirWithEntry(".."), "invalid entry name '..'");
  ExpectRejected(DirWithEntry("a/b"), "contains '/'");
  ExpectRejected(DirWithEntry(std::string("a\0b", 3)), "contains a NUL byte");
  ExpectRejected(DirWithEntry(std::string(256, 'n')), "entry name of 256 bytes");
  // 255 bytes is fine.
  EXPECT_EQ(Events(DirWithEntry(std::string(255, 'n'))).size(), 3u);
}

TEST(NarParserRejectTest, UnsortedAndDuplicateEntries) {
  ExpectRejected(DirWithEntries({"b", "a"}), "entry 'a' is not sorted after 'b'");
  ExpectRejected(DirWithEntries({"a", "a"}), "duplicate entry name 'a'");
  ExpectRejected(DirWithEntries({"a", "b", "b"}), "duplicate entry name 'b'");
  // Unsigned byte order: 0xc3 sorts after 'z'.
  ExpectRejected(DirWithEntries({"\xc3\xa9", "z"}), "is not sorted");
  EXPECT_EQ(Events(DirWithEntries({"z", "\xc3\xa9"})).size(), 5u);
  // Per-name comparison: "a" (with a child "b") then "a-b" is the canonical order, although the
  // path "a/b" sorts after "a-b" as a whole string.
  EXPECT_NO_THROW(Events(WriteNar(SampleTree())));
  ExpectRejected(DirWithEntries({"a-b", "a"}), "is not sorted");
  ExpectRejected(DirWithEntries({"ab", "a"}), "is not sorted");
}

TEST(NarParserRejectTest, BadSymlinkTargets) {
  auto link = [](std::string_view target) {
    return NarWriter()
        .Magic()
        .Str("(")
        .Str("type")
        .Str("symlink")
        .Str("target")
        .Str(target)
        .Str(")")
        .Take();
  };
  ExpectRejected(link(""), "empty symlink target");
  ExpectRejected(link(std::string("a\0b", 3)), "contains a NUL byte");
  ExpectRejected(link(std::string(4096, 't')), "symlink target of 4096 bytes");
  EXPECT_EQ(Events(link(std::string(4095, 't'))).size(), 1u);
}

TEST(NarParserRejectTest, NestingDepth) {
  auto nested = [](int depth) {
    NarTree t = NarTree::File("leaf");
    for (int i = 0; i < depth; ++i) t = NarTree::Directory({{"d", std::move(t)}});
    return WriteNar(t);
  };
  // A file at depth 63 (63 directories above it) is fine; at depth 64 it is refused.
  EXPECT_EQ(Events(nested(63)).size(), 63u + 2u);
  ExpectRejected(nested(64), "nesting depth 64 exceeds the limit of 63");
}

TEST(NarParserRejectTest, NonZeroPadding) {
  std::string nar = WriteNar(NarTree::File("abc"));
  // Padding of the contents: bytes 99..103.
  std::string bad = nar;
  bad[100] = 1;
  ExpectRejected(bad, "non-zero padding after file contents", 99);
  // Padding of a tag ("regular" is 7 bytes: padding at 24+16+16+8+7).
  bad = nar;
  bad[71] = 'x';
  ExpectRejected(bad, "non-zero padding", 71);
  // Padding of the magic.
  bad = nar;
  bad[23] = 1;
  ExpectRejected(bad, "non-zero padding", 21);
}

TEST(NarParserRejectTest, TrailingData) {
  std::string nar = WriteNar(SampleTree());
  ExpectRejected(nar + std::string(8, '\0'), "data after the end of the NAR", nar.size());
  ExpectRejected(nar + "x", "data after the end of the NAR", nar.size());
  ExpectRejected(nar + WriteNar(SampleTree()), "data after the end of the NAR", nar.size());
}

TEST(NarParserRejectTest, FailedParserStaysFailed) {
  RecordingSink sink;
  NarParser parser(sink);
  EXPECT_THROW(parser.Feed(std::string(16, 'x')), FormatError);
  EXPECT_THROW(parser.Feed(WriteNar(SampleTree())), FormatError);
  EXPECT_THROW(parser.Finish(), FormatError);
}

}  // namespace
}  // namespace nls
