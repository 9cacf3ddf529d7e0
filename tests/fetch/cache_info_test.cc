#include "fetch/cache_info.h"

#include <gtest/gtest.h>

#include "fetch/error.h"

namespace nls {
namespace {

TEST(CacheInfo, ParsesWhatNixWrites) {
  // As written by `nix copy --to file://...` and served by cache.nixos.org.
  const CacheInfo info =
      CacheInfo::Parse("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", "test");
  EXPECT_EQ(info.store_dir, "/nix/store");
  EXPECT_TRUE(info.want_mass_query);
  EXPECT_EQ(info.priority, 40);
}

TEST(CacheInfo, Defaults) {
  const CacheInfo info = CacheInfo::Parse("StoreDir: /nix/store\n", "test");
  EXPECT_FALSE(info.want_mass_query);
  EXPECT_EQ(info.priority, 50);
  const CacheInfo empty = CacheInfo::Parse("", "test");
  EXPECT_EQ(empty.store_dir, "/nix/store");
}

TEST(CacheInfo, TolerantSpacingUnknownKeysAndNoFinalNewline) {
  const CacheInfo info = CacheInfo::Parse(
      "StoreDir:/opt/store\r\n\nFoo: bar\nWantMassQuery:   0  \nPriority: -3", "test");
  EXPECT_EQ(info.store_dir, "/opt/store");
  EXPECT_FALSE(info.want_mass_query);
  EXPECT_EQ(info.priority, -3);
}

void ExpectRejected(const std::string& text, const std::string& reason) {
  try {
    CacheInfo::Parse(text, "http://127.0.0.1:8080/nix-cache-info");
    ADD_FAILURE() << text;
  } catch (const FormatError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("http://127.0.0.1:8080/nix-cache-info line "), std::string::npos) << what;
    EXPECT_NE(what.find(reason), std::string::npos) << what;
  }
}

TEST(CacheInfo, RejectsBadValues) {
  ExpectRejected("<html>not found</html>\n", "not a Nix binary cache");
  ExpectRejected("StoreDir: nix/store\n", "invalid StoreDir");
  ExpectRejected("StoreDir: \n", "invalid StoreDir");
  ExpectRejected("StoreDir: /nix/store/\n", "invalid StoreDir");
  ExpectRejected("WantMassQuery: yes\n", "invalid WantMassQuery");
  ExpectRejected("WantMassQuery: \n", "invalid WantMassQuery");
  ExpectRejected("Priority: high\n", "invalid Priority");
  ExpectRejected("Priority: \n", "invalid Priority");
  ExpectRejected("Priority: 10x\n", "invalid Priority");
  ExpectRejected("Priority: 99999999999999999999\n", "invalid Priority");
  ExpectRejected("StoreDir: /nix/store\nPriority: 1 2\n", "line 2: invalid Priority");
}

}  // namespace
}  // namespace nls
