#include "fetch/store_path.h"

#include <gtest/gtest.h>

#include <string>

#include "fetch/error.h"

namespace nls {
namespace {

constexpr std::string_view kHash = "syd87l2rxw8cbsxmxl853h0r6pdwhwjr";

std::string Base(std::string_view name) { return std::string(kHash) + "-" + std::string(name); }

// Both parsers must agree; returns whether the base name was accepted.
bool Accepts(const std::string& base_name) {
  const bool try_ok = StorePath::TryFromBaseName(base_name).has_value();
  bool throw_ok = true;
  try {
    StorePath::FromBaseName(base_name);
  } catch (const FormatError& e) {
    throw_ok = false;
    // The message names the offending input and says why.
    EXPECT_NE(std::string(e.what()).find(Quoted(base_name, 300)), std::string::npos) << e.what();
  }
  EXPECT_EQ(try_ok, throw_ok) << base_name;
  return try_ok;
}

TEST(StorePath, ParsesRealBaseName) {
  const StorePath p = StorePath::FromBaseName(Base("curl-7.82.0-bin"));
  EXPECT_EQ(p.hash_part(), kHash);
  EXPECT_EQ(p.name(), "curl-7.82.0-bin");
  EXPECT_EQ(p.base_name(), Base("curl-7.82.0-bin"));
  EXPECT_EQ(p.FullPath(), "/nix/store/" + Base("curl-7.82.0-bin"));
  EXPECT_EQ(p.FullPath("/opt/store"), "/opt/store/" + Base("curl-7.82.0-bin"));
}

TEST(StorePath, AcceptsEveryAllowedNameCharacter) {
  EXPECT_TRUE(
      Accepts(Base("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=")));
  EXPECT_TRUE(Accepts(Base("x")));
  EXPECT_TRUE(Accepts(Base(".x")));
  EXPECT_TRUE(Accepts(Base("..x")));
  EXPECT_TRUE(Accepts(Base("...")));
  EXPECT_TRUE(Accepts(Base("-")));
  EXPECT_TRUE(Accepts(Base("x.-")));
  EXPECT_TRUE(Accepts(Base("hello-2.12.drv")));
}

TEST(StorePath, NameLengthLimitIs211) {
  EXPECT_TRUE(Accepts(Base(std::string(211, 'a'))));
  EXPECT_FALSE(Accepts(Base(std::string(212, 'a'))));
  EXPECT_FALSE(Accepts(Base("")));
}

TEST(StorePath, RejectsBadNames) {
  for (const char* name : {".", "..", ".-", "..-", ".-foo", "..-foo", "a b", "a/b", "a@b", "a:b",
                           "a\\b", "a~b", "a%b", "a,b", "a\nb", "\xc3\xa9", "a\tb"}) {
    EXPECT_FALSE(Accepts(Base(name))) << name;
  }
  EXPECT_FALSE(Accepts(Base(std::string("a\0b", 3))));
}

TEST(StorePath, RejectsBadHashParts) {
  EXPECT_FALSE(Accepts("syd87l2rxw8cbsxmxl853h0r6pdwhwj-curl"));    // 31 chars
  EXPECT_FALSE(Accepts("syd87l2rxw8cbsxmxl853h0r6pdwhwjrr-curl"));  // 33 chars
  EXPECT_FALSE(Accepts("Syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl"));   // upper case
  for (char bad : std::string("eotu-_.")) {
    std::string base = Base("curl");
    base[5] = bad;
    EXPECT_FALSE(Accepts(base)) << bad;
  }
  EXPECT_FALSE(Accepts(std::string(kHash) + "_curl"));  // no '-' separator
  EXPECT_FALSE(Accepts(std::string(kHash) + "-"));      // empty name
  EXPECT_FALSE(Accepts(std::string(kHash)));
  EXPECT_FALSE(Accepts(""));
  EXPECT_FALSE(Accepts("curl"));
}

TEST(StorePath, IsValidHashPart) {
  EXPECT_TRUE(StorePath::IsValidHashPart(kHash));
  EXPECT_TRUE(StorePath::IsValidHashPart("00000000000000000000000000000000"));
  EXPECT_FALSE(StorePath::IsValidHashPart(kHash.substr(1)));
  EXPECT_FALSE(StorePath::IsValidHashPart(std::string(kHash) + "0"));
  EXPECT_FALSE(StorePath::IsValidHashPart("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"));
  EXPECT_FALSE(StorePath::IsValidHashPart(""));
}

TEST(StorePath, FromFullPath) {
  const StorePath p = StorePath::FromFullPath("/nix/store/" + Base("curl"));
  EXPECT_EQ(p.base_name(), Base("curl"));
  EXPECT_EQ(StorePath::FromFullPath("/opt/s/" + Base("curl"), "/opt/s").base_name(), Base("curl"));
  for (const std::string& bad :
       {Base("curl"), "/nix/store/" + Base("curl") + "/bin/curl",
        "/nix/store/" + Base("curl") + "/", "/nix/store//" + Base("curl"),
        "/nix/storex/" + Base("curl"), "/nix/" + Base("curl"), std::string("/nix/store/"),
        std::string("/nix/store"), std::string(""), "/opt/s/" + Base("curl"),
        "/nix/store/" + Base("a b")}) {
    EXPECT_THROW(StorePath::FromFullPath(bad), FormatError) << bad;
  }
  try {
    StorePath::FromFullPath("/tmp/" + Base("curl"));
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/tmp/" + Base("curl")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("/nix/store"), std::string::npos) << e.what();
  }
}

TEST(StorePath, OrdersByBaseName) {
  const StorePath a = StorePath::FromBaseName("00000000000000000000000000000000-b");
  const StorePath b = StorePath::FromBaseName("10000000000000000000000000000000-a");
  EXPECT_LT(a, b);
  EXPECT_EQ(a, StorePath::FromBaseName("00000000000000000000000000000000-b"));
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace nls
