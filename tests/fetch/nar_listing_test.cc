#include "fetch/nar_listing.h"

#include <gtest/gtest.h>

#include <string>

#include "fetch/error.h"
#include "fetch/nar_parser.h"
#include "fetch/nar_writer.h"

namespace nls {
namespace {

// A listing as Nix 2.8 writes it (key order, no "executable":false).
constexpr std::string_view kNixListing =
    R"({"version":1,"root":{"type":"directory","entries":{"bin":{"type":"directory","entries":)"
    R"({"hello":{"type":"regular","size":5,"executable":true,"narOffset":400}}},)"
    R"("lib":{"type":"symlink","target":"/nix/store/x-lib"},)"
    R"("readme":{"type":"regular","size":0,"narOffset":700}}}})";

TEST(NarListingTest, ParsesNixListing) {
  ListingNode root = ParseListing(kNixListing, "test.ls");
  ASSERT_EQ(root.type, ListingNode::Type::kDirectory);
  ASSERT_EQ(root.entries.size(), 3u);
  const ListingNode& hello = root.entries.at("bin").entries.at("hello");
  EXPECT_EQ(hello.type, ListingNode::Type::kRegular);
  EXPECT_EQ(hello.size, 5u);
  EXPECT_TRUE(hello.executable);
  EXPECT_EQ(hello.nar_offset, 400u);
  EXPECT_EQ(root.entries.at("lib").target, "/nix/store/x-lib");
  EXPECT_FALSE(root.entries.at("readme").executable);  // missing means false
}

TEST(NarListingTest, ToJsonWritesWhatNixWrites) {
  EXPECT_EQ(ListingToJson(ParseListing(kNixListing, "test.ls")), kNixListing);
}

TEST(NarListingTest, OptionalFields) {
  ListingNode n = ParseListing(
      R"({"version":1,"root":{"type":"regular","size":3,"executable":false,"extra":1}})", "x");
  EXPECT_FALSE(n.nar_offset.has_value());
  EXPECT_EQ(ListingToJson(n), R"({"version":1,"root":{"type":"regular","size":3}})");
}

TEST(NarListingTest, RejectsBadStructure) {
  struct Case {
    const char* json;
    const char* reason;
  } cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[]", "not an object"},
      {R"({"root":{"type":"directory","entries":{}}})", "missing field \"version\""},
      {R"({"version":2,"root":{"type":"directory","entries":{}}})", "unsupported version 2"},
      {R"({"version":"1","root":{"type":"directory","entries":{}}})", "unsupported version"},
      {R"({"version":1})", "missing field \"root\""},
      {R"({"version":1,"root":[]})", "node is not an object"},
      {R"({"version":1,"root":{}})", "missing field \"type\""},
      {R"({"version":1,"root":{"type":7}})", "\"type\" is not a string"},
      {R"({"version":1,"root":{"type":"fifo"}})", "unknown node type \"fifo\""},
      {R"({"version":1,"root":{"type":"directory"}})", "missing field \"entries\""},
      {R"({"version":1,"root":{"type":"directory","entries":[]}})", "not an object"},
      {R"({"version":1,"root":{"type":"regular"}})", "missing field \"size\""},
      {R"({"version":1,"root":{"type":"regular","size":-1}})", "non-negative integer"},
      {R"({"version":1,"root":{"type":"regular","size":"1"}})", "non-negative integer"},
      {R"({"version":1,"root":{"type":"regular","size":1.5}})", "non-negative integer"},
      {R"({"version":1,"root":{"type":"regular","size":1,"executable":1}})", "not a boolean"},
      {R"({"version":1,"root":{"type":"regular","size":1,"narOffset":"9"}})", "narOffset"},
      {R"({"version":1,"root":{"type":"symlink"}})", "missing field \"target\""},
      {R"({"version":1,"root":{"type":"symlink","target":""}})", "empty symlink target"},
      {R"({"version":1,"root":{"type":"symlink","target":3}})", "not a string"},
      {R"({"version":1,"root":{"type":"directory","entries":{"":{"type":"symlink","target":"a"}}}})",
       "invalid entry name"},
      {R"({"version":1,"root":{"type":"directory","entries":{"..":{"type":"symlink","target":"a"}}}})",
       "invalid entry name \"..\""},
      {R"({"version":1,"root":{"type":"directory","entries":{"a/b":{"type":"symlink","target":"a"}}}})",
       "invalid entry name \"a/b\""},
      {R"({"version":1,"root":{"type":"directory","entries":{"d":{"type":"directory","entries":{"f":{"type":"regular"}}}}}})",
       "missing field \"size\" at d/f"},
  };
  std::string long_name = R"({"version":1,"root":{"type":"directory","entries":{")" +
                          std::string(256, 'n') + R"(":{"type":"symlink","target":"a"}}}})";
  std::string long_target =
      R"({"version":1,"root":{"type":"symlink","target":")" + std::string(4096, 't') + R"("}})";
  EXPECT_THROW(ParseListing(long_name, "x"), FormatError);
  EXPECT_THROW(ParseListing(long_target, "x"), FormatError);
  for (const Case& c : cases) {
    try {
      ParseListing(c.json, "https://cache/abc.ls");
      ADD_FAILURE() << "accepted " << c.json;
    } catch (const FormatError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(c.reason), std::string::npos) << c.json << " -> " << msg;
      EXPECT_NE(msg.find("https://cache/abc.ls"), std::string::npos) << msg;
    }
  }
}

TEST(NarListingTest, BuilderMatchesNarStructure) {
  NarTree tree = NarTree::Directory({
      {"bin", NarTree::Directory({{"hello", NarTree::File("hello", true)}})},
      {"empty", NarTree::Directory()},
      {"lib", NarTree::Symlink("/nix/store/x-lib")},
      {"readme", NarTree::File("")},
  });
  std::string nar = WriteNar(tree);
  ListingBuilder builder;
  ParseNar(nar, builder);
  const ListingNode& root = builder.root();
  ASSERT_EQ(root.entries.size(), 4u);
  const ListingNode& hello = root.entries.at("bin").entries.at("hello");
  ASSERT_TRUE(hello.nar_offset.has_value());
  EXPECT_EQ(nar.substr(*hello.nar_offset, 5), "hello");
  EXPECT_TRUE(hello.executable);
  EXPECT_EQ(root.entries.at("empty").type, ListingNode::Type::kDirectory);
  EXPECT_TRUE(root.entries.at("empty").entries.empty());
  // Round trip through JSON.
  EXPECT_EQ(ParseListing(ListingToJson(root), "roundtrip"), root);
}

TEST(NarListingTest, BuilderOfSingleFileAndSymlink) {
  ListingBuilder b1;
  ParseNar(WriteNar(NarTree::File("hello\n")), b1);
  EXPECT_EQ(ListingToJson(b1.root()),
            R"({"version":1,"root":{"type":"regular","size":6,"narOffset":96}})");
  ListingBuilder b2;
  ParseNar(WriteNar(NarTree::Symlink("t")), b2);
  EXPECT_EQ(ListingToJson(b2.root()), R"({"version":1,"root":{"type":"symlink","target":"t"}})");
}

}  // namespace
}  // namespace nls
