#include "fetch/hash.h"

#include <gtest/gtest.h>

#include <string>

#include "fetch/error.h"

namespace nls {
namespace {

// sha256("abc") in every form (FIPS 180-2 test vector; Nix32 as printed by Nix).
constexpr const char* kAbcBase16 =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* kAbcNix32 = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
constexpr const char* kAbcBase64 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

TEST(Hash, Sha256OfKnownInputs) {
  EXPECT_EQ(Hash::Of("abc").ToBase16(), kAbcBase16);
  EXPECT_EQ(Hash::Of("abc").ToNix32(), kAbcNix32);
  EXPECT_EQ(Hash::Of("abc").ToBase64(), kAbcBase64);
  EXPECT_EQ(Hash::Of("").ToBase16(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // FIPS 180-2 two-block message.
  EXPECT_EQ(Hash::Of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").ToBase16(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Hash, StringForms) {
  const Hash h = Hash::Of("abc");
  EXPECT_EQ(h.ToNixString(), std::string("sha256:") + kAbcNix32);
  EXPECT_EQ(h.ToSri(), std::string("sha256-") + kAbcBase64);
}

TEST(Hash, ParsesEveryForm) {
  const Hash h = Hash::Of("abc");
  EXPECT_EQ(Hash::Parse(std::string("sha256:") + kAbcNix32), h);
  EXPECT_EQ(Hash::Parse(std::string("sha256:") + kAbcBase16), h);
  EXPECT_EQ(Hash::Parse(std::string("sha256:") + kAbcBase64), h);
  EXPECT_EQ(Hash::Parse(std::string("sha256-") + kAbcBase64), h);
  // Base16 in upper case is accepted, as Nix does.
  std::string upper = kAbcBase16;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(Hash::Parse("sha256:" + upper), h);
}

TEST(Hash, StreamingEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 7));
  Sha256 hasher;
  for (size_t pos = 0; pos < data.size(); pos += 777)
    hasher.Update(std::string_view(data).substr(pos, 777));
  EXPECT_EQ(hasher.Finish(), Hash::Of(data));
}

TEST(Hash, FinishTwiceOrUpdateAfterFinishThrows) {
  Sha256 hasher;
  hasher.Update("x");
  hasher.Finish();
  EXPECT_THROW(hasher.Finish(), Error);
  EXPECT_THROW(hasher.Update("y"), Error);
}

TEST(Hash, RoundTripsThroughEveryForm) {
  for (int i = 0; i < 50; ++i) {
    const Hash h = Hash::Of(std::to_string(i));
    EXPECT_EQ(Hash::Parse(h.ToNixString()), h);
    EXPECT_EQ(Hash::Parse(h.ToSri()), h);
    EXPECT_EQ(Hash::Parse("sha256:" + h.ToBase16()), h);
    EXPECT_EQ(Hash::Parse("sha256:" + h.ToBase64()), h);
  }
}

void ExpectBad(const std::string& text, const std::string& reason_part) {
  try {
    Hash::Parse(text);
    ADD_FAILURE() << "accepted '" << text << "'";
  } catch (const FormatError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(reason_part), std::string::npos) << what;
    // The message names the input (possibly shortened).
    EXPECT_NE(what.find(text.substr(0, 20)), std::string::npos) << what;
  }
}

TEST(Hash, RejectsBadInputs) {
  const std::string nix32 = kAbcNix32;
  const std::string hex = kAbcBase16;
  const std::string b64 = kAbcBase64;
  ExpectBad("", "missing 'sha256:' prefix");
  ExpectBad(nix32, "missing 'sha256:' prefix");
  ExpectBad("sha256", "missing 'sha256:' prefix");
  ExpectBad("sha256:", "wrong length 0");
  ExpectBad("SHA256:" + nix32, "unsupported hash type");
  ExpectBad("md5:" + hex.substr(0, 32), "unsupported hash type");
  ExpectBad("sha1:kpcd173cq987hw957sx6m0868wv3x6d9", "unsupported hash type");
  ExpectBad("sha512-" + b64, "unsupported hash type");
  ExpectBad("sha256:" + nix32.substr(1), "wrong length 51");
  ExpectBad("sha256:" + nix32 + "0", "wrong length 53");
  ExpectBad("sha256:" + hex.substr(2), "wrong length 62");
  ExpectBad("sha256: " + nix32, "wrong length 53");
  ExpectBad("sha256:e" + nix32.substr(1), "Nix32");  // 'e' is not Nix32
  ExpectBad("sha256:2" + nix32.substr(1), "Nix32");  // bits beyond 256
  ExpectBad("sha256:g" + hex.substr(1), "base16");   // 'g' is not hex
  ExpectBad("sha256:" + hex.substr(0, 63) + " ", "base16");
  ExpectBad("sha256:" + b64.substr(0, 43) + "!", "base64");
  ExpectBad("sha256:" + b64.substr(0, 42) + "==", "base64");  // 31 bytes
  ExpectBad("sha256-" + b64.substr(0, 40), "base64");
  ExpectBad("sha256-" + b64 + "AAAA", "base64");
  ExpectBad("sha256-", "base64");
  ExpectBad("sha256-" + nix32, "base64");
  ExpectBad(std::string("sha256:") + std::string(1000, 'a'), "wrong length 1000");
}

}  // namespace
}  // namespace nls
