#include "fetch/signature.h"

#include <gtest/gtest.h>

#include <string>

#include "fetch/base64.h"
#include "fetch/error.h"

namespace nls {
namespace {

constexpr std::string_view kCacheKey =
    "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

// A real narinfo from cache.nixos.org (see docs reference); URL added because Parse requires it
// (URL, Compression, FileHash and FileSize are not signed).
const std::string kRealNarInfo =
    "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin\n"
    "URL: nar/0000000000000000000000000000000000000000000000000000.nar.xz\n"
    "NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n"
    "NarSize: 196040\n"
    "References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 "
    "6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 "
    "yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n\n"
    "Sig: "
    "cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+"
    "vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==\n";

NarInfo RealInfo() { return NarInfo::Parse(kRealNarInfo, "test:real.narinfo"); }

TrustedKeys CacheKeys() { return TrustedKeys({PublicKey::Parse(kCacheKey)}); }

TEST(Signature, RealCacheNixosOrgNarInfoVerifies) {
  EXPECT_TRUE(CacheKeys().Verifies(RealInfo()));
  EXPECT_TRUE(PublicKey::Parse(kCacheKey).Verify(RealInfo().Fingerprint(), RealInfo().sigs[0]));
}

TEST(Signature, UnsignedFieldsDoNotMatter) {
  NarInfo info = RealInfo();
  info.url = "nar/other.nar.zst";
  info.compression = "zstd";
  info.file_hash = Hash::Of("x");
  info.file_size = 5;
  info.deriver = StorePath::FromBaseName("3v3p0xwb2qczx3jnqn3pjfrfyp3h0wq2-curl-7.82.0.drv");
  std::reverse(info.references.begin(), info.references.end());  // order is not signed
  EXPECT_TRUE(CacheKeys().Verifies(info));
}

TEST(Signature, AlteringAnySignedFieldFails) {
  const TrustedKeys keys = CacheKeys();
  {
    NarInfo info = RealInfo();
    info.store_path = StorePath::FromBaseName("syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-biN");
    EXPECT_FALSE(keys.Verifies(info)) << "name";
  }
  {
    NarInfo info = RealInfo();
    info.store_path = StorePath::FromBaseName("syd87l2rxw8cbsxmxl853h0r6pdwhwjs-curl-7.82.0-bin");
    EXPECT_FALSE(keys.Verifies(info)) << "hash part";
  }
  {
    NarInfo info = RealInfo();
    EXPECT_FALSE(keys.Verifies(info, "/gnu/store")) << "store dir";
  }
  {
    NarInfo info = RealInfo();
    auto bytes = info.nar_hash.bytes();
    bytes[31] ^= 1;
    info.nar_hash = Hash(bytes);
    EXPECT_FALSE(keys.Verifies(info)) << "NarHash";
  }
  for (uint64_t size : {196039ull, 196041ull, 0ull}) {
    NarInfo info = RealInfo();
    info.nar_size = size;
    EXPECT_FALSE(keys.Verifies(info)) << "NarSize " << size;
  }
  for (size_t i = 0; i < RealInfo().references.size(); ++i) {
    NarInfo removed = RealInfo();
    removed.references.erase(removed.references.begin() + static_cast<long>(i));
    EXPECT_FALSE(keys.Verifies(removed)) << "removed reference " << i;

    NarInfo changed = RealInfo();
    std::string base = changed.references[i].base_name();
    base.back() = base.back() == '0' ? '1' : '0';
    changed.references[i] = StorePath::FromBaseName(base);
    EXPECT_FALSE(keys.Verifies(changed)) << "changed reference " << i;
  }
  {
    NarInfo info = RealInfo();
    info.references.push_back(StorePath::FromBaseName("3v3p0xwb2qczx3jnqn3pjfrfyp3h0wq2-extra"));
    EXPECT_FALSE(keys.Verifies(info)) << "added reference";
  }
  {
    NarInfo info = RealInfo();
    std::string sig = info.sigs[0];
    sig[30] = sig[30] == 'A' ? 'B' : 'A';
    info.sigs = {sig};
    EXPECT_FALSE(keys.Verifies(info)) << "signature bytes";
  }
}

TEST(Signature, WrongKeyNameFails) {
  // Same key bytes under another name: the Sig names cache.nixos.org-1, so it must not count.
  const TrustedKeys renamed(
      {PublicKey::Parse("cache.nixos.org-2:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")});
  EXPECT_FALSE(renamed.Verifies(RealInfo()));
  NarInfo info = RealInfo();
  info.sigs[0].replace(0, std::string("cache.nixos.org-1").size(), "cache.nixos.org-2");
  EXPECT_FALSE(CacheKeys().Verifies(info));
}

TEST(Signature, WrongKeyFails) {
  const SecretKey other = SecretKey::Generate("cache.nixos.org-1");
  EXPECT_FALSE(TrustedKeys({other.ToPublicKey()}).Verifies(RealInfo()));
  EXPECT_FALSE(TrustedKeys().Verifies(RealInfo()));  // no keys: nothing is trusted
  NarInfo unsigned_info = RealInfo();
  unsigned_info.sigs.clear();
  EXPECT_FALSE(CacheKeys().Verifies(unsigned_info));
}

TEST(Signature, SeveralKeysOneGoodSignatureSuffices) {
  const SecretKey a = SecretKey::Generate("a-1");
  const SecretKey b = SecretKey::Generate("b-1");
  const SecretKey untrusted = SecretKey::Generate("c-1");
  NarInfo info = RealInfo();
  // Garbage and untrusted signatures before and after the good one.
  info.sigs = {"a-1:garbage",
               "nokey",
               untrusted.Sign(info.Fingerprint()),
               "a-1:" + base64::Encode(std::string(64, 'x')),
               b.Sign(info.Fingerprint()),
               "b-1:"};
  TrustedKeys keys;
  keys.Add(a.ToPublicKey());
  keys.Add(PublicKey::Parse(kCacheKey));
  EXPECT_FALSE(keys.Verifies(info));  // b is not trusted yet
  keys.Add(b.ToPublicKey());
  EXPECT_TRUE(keys.Verifies(info));
  // The original cache.nixos.org signature alongside others also suffices.
  NarInfo both = RealInfo();
  both.sigs.insert(both.sigs.begin(), a.Sign("something else"));
  EXPECT_TRUE(keys.Verifies(both));
}

TEST(Signature, SignAndVerifyRoundTrip) {
  const SecretKey sk = SecretKey::Generate("test-key-1");
  const PublicKey pk = sk.ToPublicKey();
  EXPECT_EQ(pk.name(), "test-key-1");
  const std::string sig = sk.Sign("hello");
  EXPECT_TRUE(sig.starts_with("test-key-1:"));
  EXPECT_EQ(sig.size(), std::string("test-key-1:").size() + 88);
  EXPECT_TRUE(pk.Verify("hello", sig));
  EXPECT_FALSE(pk.Verify("hello!", sig));
  EXPECT_FALSE(pk.Verify("hello", sig.substr(0, sig.size() - 4)));
  // Keys survive their text form.
  EXPECT_EQ(SecretKey::Parse(sk.ToString()).ToString(), sk.ToString());
  EXPECT_EQ(PublicKey::Parse(pk.ToString()).ToString(), pk.ToString());
  EXPECT_TRUE(SecretKey::Parse(sk.ToString()).ToPublicKey().Verify("hello", sig));
  // Ed25519 is deterministic.
  EXPECT_EQ(sk.Sign("hello"), sig);
  // Two generated keys differ.
  EXPECT_NE(SecretKey::Generate("test-key-1").ToString(), sk.ToString());
}

// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
std::string Hex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

TEST(Signature, Rfc8032Vectors) {
  struct V {
    const char* seed;
    const char* pub;
    std::string msg;
    const char* sig;
  };
  const V vectors[] = {
      {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
       "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
       "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
       "1cf9b46bd25bf5f0595bbe24655141438e7a100b"},
      {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
       "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "\x72",
       "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
       "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
  };
  for (const V& v : vectors) {
    const std::string secret = Hex(v.seed) + Hex(v.pub);
    const SecretKey sk = SecretKey::Parse("rfc:" + base64::Encode(secret));
    EXPECT_EQ(sk.Sign(v.msg), "rfc:" + base64::Encode(Hex(v.sig)));
    const PublicKey pk = PublicKey::Parse("rfc:" + base64::Encode(Hex(v.pub)));
    EXPECT_TRUE(pk.Verify(v.msg, "rfc:" + base64::Encode(Hex(v.sig))));
    EXPECT_EQ(sk.ToPublicKey().ToString(), pk.ToString());
  }
}

TEST(Signature, RejectsBadKeys) {
  for (const std::string& bad :
       {std::string(""), std::string("nocolon"),
        std::string(":6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="), std::string("k:"),
        std::string("k:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShj="),
        std::string("k:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY"),
        std::string("k:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=AAAA"),
        std::string("k: 6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")}) {
    EXPECT_THROW(PublicKey::Parse(bad), FormatError) << bad;
    EXPECT_THROW(SecretKey::Parse(bad), FormatError) << bad;
  }
  // A public key is not a secret key and vice versa.
  const SecretKey sk = SecretKey::Generate("k");
  EXPECT_THROW(SecretKey::Parse(sk.ToPublicKey().ToString()), FormatError);
  EXPECT_THROW(PublicKey::Parse(sk.ToString()), FormatError);
  // The public half of a secret key must belong to its seed.
  const std::string raw = *base64::Decode(sk.ToString().substr(2));
  std::string tampered = raw;
  tampered[40] ^= 1;
  EXPECT_THROW(SecretKey::Parse("k:" + base64::Encode(tampered)), FormatError);
  // Messages never contain secret key material.
  try {
    SecretKey::Parse(sk.ToString().substr(2));
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_EQ(std::string(e.what()).find(sk.ToString().substr(2, 20)), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(SecretKey::Generate(""), FormatError);
  EXPECT_THROW(SecretKey::Generate("a:b"), FormatError);
}

}  // namespace
}  // namespace nls
