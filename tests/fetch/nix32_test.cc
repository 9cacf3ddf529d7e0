#include "fetch/nix32.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace nls {
namespace {

std::vector<uint8_t> FromHex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// Vectors as printed by Nix itself (`nix-hash --to-base32`, and Nix's documentation).
struct Vector {
  const char* hex;
  const char* nix32;
};
constexpr Vector kVectors[] = {
    // sha256("abc")
    {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
     "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
    // sha256("")
    {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
    // sha256("The quick brown fox jumps over the lazy dog")
    {"d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
     "14p5r4vvzl025mvdng3dwi8md3ag5q4b1g4sr9lr906p0yrzpa6p"},
    // sha1("abc"): 20 bytes, the size of a store path hash part
    {"a9993e364706816aba3e25717850c26c9cd0d89d", "kpcd173cq987hw957sx6m0868wv3x6d9"},
};

TEST(Nix32, EncodesPublishedVectors) {
  for (const Vector& v : kVectors) {
    EXPECT_EQ(nix32::Encode(FromHex(v.hex)), v.nix32) << v.hex;
  }
}

TEST(Nix32, DecodesPublishedVectors) {
  for (const Vector& v : kVectors) {
    const auto bytes = FromHex(v.hex);
    auto decoded = nix32::Decode(v.nix32, bytes.size());
    ASSERT_TRUE(decoded.has_value()) << v.nix32;
    EXPECT_EQ(*decoded, bytes) << v.nix32;
  }
}

TEST(Nix32, EncodedLength) {
  EXPECT_EQ(nix32::EncodedLength(0), 0u);
  EXPECT_EQ(nix32::EncodedLength(1), 2u);
  EXPECT_EQ(nix32::EncodedLength(5), 8u);
  EXPECT_EQ(nix32::EncodedLength(20), 32u);
  EXPECT_EQ(nix32::EncodedLength(32), 52u);
  EXPECT_EQ(nix32::EncodedLength(64), 103u);
}

TEST(Nix32, SingleBytesUseNixBitOrder) {
  // One byte b: two characters, the first holding the top 3 bits, the second the low 5 bits.
  EXPECT_EQ(nix32::Encode(std::vector<uint8_t>{0x00}), "00");
  EXPECT_EQ(nix32::Encode(std::vector<uint8_t>{0x1f}), "0z");
  EXPECT_EQ(nix32::Encode(std::vector<uint8_t>{0x20}), "10");
  EXPECT_EQ(nix32::Encode(std::vector<uint8_t>{0xff}), "7z");
  // Two bytes: the last byte comes out first.
  EXPECT_EQ(nix32::Encode(std::vector<uint8_t>{0x00, 0x80}), "1000");
  EXPECT_EQ(nix32::Encode(std::vector<uint8_t>{0x01, 0x00}), "0001");
}

TEST(Nix32, RoundTripsRandomBytesOfEveryLength) {
  std::mt19937 rng(12345);
  for (size_t n = 0; n <= 70; ++n) {
    for (int rep = 0; rep < 20; ++rep) {
      std::vector<uint8_t> bytes(n);
      for (auto& b : bytes) b = static_cast<uint8_t>(rng());
      const std::string text = nix32::Encode(bytes);
      ASSERT_EQ(text.size(), nix32::EncodedLength(n));
      ASSERT_TRUE(nix32::IsValidChars(text));
      auto back = nix32::Decode(text, n);
      ASSERT_TRUE(back.has_value()) << text;
      ASSERT_EQ(*back, bytes) << text;
    }
  }
}

TEST(Nix32, RejectsCharactersOutsideTheAlphabet) {
  const std::string good = kVectors[0].nix32;
  for (char bad : std::string("eoutEOUTA-_/ .+=\x80")) {
    std::string text = good;
    text[10] = bad;
    EXPECT_FALSE(nix32::Decode(text, 32).has_value()) << "char " << int(bad);
    EXPECT_FALSE(nix32::IsValidChars(text)) << "char " << int(bad);
  }
  std::string with_nul = good;
  with_nul[3] = '\0';
  EXPECT_FALSE(nix32::Decode(with_nul, 32).has_value());
}

TEST(Nix32, RejectsWrongLength) {
  const std::string good = kVectors[0].nix32;
  EXPECT_FALSE(nix32::Decode(good.substr(1), 32).has_value());
  EXPECT_FALSE(nix32::Decode(good + "0", 32).has_value());
  EXPECT_FALSE(nix32::Decode(good, 31).has_value());
  EXPECT_FALSE(nix32::Decode("", 32).has_value());
  EXPECT_TRUE(nix32::Decode("", 0).has_value());
}

TEST(Nix32, RejectsNonZeroBitsBeyondTheBytes) {
  // 52 chars carry 260 bits for 256: the first character may only be 0 or 1.
  std::string text = kVectors[0].nix32;  // starts with '1'
  ASSERT_TRUE(nix32::Decode(text, 32).has_value());
  for (char c : std::string("23456789abcdfghijklmnpqrsvwxyz")) {
    text[0] = c;
    EXPECT_FALSE(nix32::Decode(text, 32).has_value()) << c;
  }
  // One byte: 10 bits for 8; the first character may be 0-7.
  EXPECT_TRUE(nix32::Decode("7z", 1).has_value());
  EXPECT_FALSE(nix32::Decode("8z", 1).has_value());
}

}  // namespace
}  // namespace nls
