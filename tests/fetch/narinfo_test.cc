#include "fetch/narinfo.h"

#include <gtest/gtest.h>

#include <string>

#include "fetch/error.h"

namespace nls {
namespace {

constexpr std::string_view kOrigin = "file:///srv/cache/syd87l2rxw8cbsxmxl853h0r6pdwhwjr.narinfo";
constexpr std::string_view kHashPart = "syd87l2rxw8cbsxmxl853h0r6pdwhwjr";

// A complete narinfo in the exact form Nix writes it (field order, "References: " spacing).
const std::string kFull =
    "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin\n"
    "URL: nar/1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar.xz\n"
    "Compression: xz\n"
    "FileHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n"
    "FileSize: 54872\n"
    "NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n"
    "NarSize: 196040\n"
    "References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 "
    "6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 "
    "yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n\n"
    "Deriver: 3v3p0xwb2qczx3jnqn3pjfrfyp3h0wq2-curl-7.82.0.drv\n"
    "Sig: "
    "cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+"
    "vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==\n"
    "Sig: other-1:AAAA\n"
    "CA: fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n";

// Only the required fields.
const std::string kMinimal =
    "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin\n"
    "URL: nar/x.nar\n"
    "NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n"
    "NarSize: 196040\n";

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// Parse must fail with a FormatError whose message names the origin, the line (if > 0) and
// contains `reason`.
void ExpectRejected(const std::string& text, size_t line, const std::string& reason,
                    std::optional<std::string_view> expected = kHashPart) {
  try {
    NarInfo::Parse(text, kOrigin, expected);
    ADD_FAILURE() << "accepted:\n" << text;
  } catch (const FormatError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(kOrigin), std::string::npos) << what;
    if (line > 0) {
      EXPECT_NE(what.find("line " + std::to_string(line) + ":"), std::string::npos) << what;
    }
    EXPECT_NE(what.find(reason), std::string::npos) << "want '" << reason << "' in: " << what;
  }
}

TEST(NarInfo, ParsesEveryField) {
  const NarInfo info = NarInfo::Parse(kFull, kOrigin, kHashPart);
  EXPECT_EQ(info.store_path.FullPath(),
            "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin");
  EXPECT_EQ(info.url, "nar/1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar.xz");
  EXPECT_EQ(info.compression, "xz");
  ASSERT_TRUE(info.file_hash.has_value());
  EXPECT_EQ(*info.file_hash, Hash::Of("abc"));
  EXPECT_EQ(info.file_size, 54872u);
  EXPECT_EQ(info.nar_hash.ToNix32(), "1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0");
  EXPECT_EQ(info.nar_size, 196040u);
  ASSERT_EQ(info.references.size(), 4u);
  EXPECT_EQ(info.references[0].base_name(), "0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0");
  EXPECT_EQ(info.references[3].base_name(), "yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n");
  ASSERT_TRUE(info.deriver.has_value());
  EXPECT_EQ(info.deriver->base_name(), "3v3p0xwb2qczx3jnqn3pjfrfyp3h0wq2-curl-7.82.0.drv");
  ASSERT_EQ(info.sigs.size(), 2u);
  EXPECT_TRUE(info.sigs[0].starts_with("cache.nixos.org-1:TsTTb3"));
  EXPECT_EQ(info.sigs[1], "other-1:AAAA");
  EXPECT_EQ(info.ca, "fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s");
}

TEST(NarInfo, DefaultsOfOptionalFields) {
  const NarInfo info = NarInfo::Parse(kMinimal, kOrigin, kHashPart);
  EXPECT_EQ(info.compression, "bzip2");  // missing Compression means bzip2
  EXPECT_FALSE(info.file_hash.has_value());
  EXPECT_FALSE(info.file_size.has_value());
  EXPECT_TRUE(info.references.empty());
  EXPECT_FALSE(info.deriver.has_value());
  EXPECT_TRUE(info.sigs.empty());
  EXPECT_FALSE(info.ca.has_value());
  // An empty Compression value also means bzip2, as in Nix.
  EXPECT_EQ(NarInfo::Parse(kMinimal + "Compression: \n", kOrigin).compression, "bzip2");
  EXPECT_EQ(NarInfo::Parse(kMinimal + "Compression: none\n", kOrigin).compression, "none");
}

TEST(NarInfo, UnknownDeriverMeansNone) {
  const NarInfo info = NarInfo::Parse(kMinimal + "Deriver: unknown-deriver\n", kOrigin);
  EXPECT_FALSE(info.deriver.has_value());
}

TEST(NarInfo, EmptyReferences) {
  EXPECT_TRUE(NarInfo::Parse(kMinimal + "References: \n", kOrigin).references.empty());
  EXPECT_TRUE(NarInfo::Parse(kMinimal + "References:\n", kOrigin).references.empty());
  // Repeated and trailing spaces separate nothing (Nix tokenizes on spaces).
  const NarInfo info = NarInfo::Parse(
      kMinimal +
          "References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-a  j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-b \n",
      kOrigin);
  ASSERT_EQ(info.references.size(), 2u);
  EXPECT_EQ(info.references[1].name(), "b");
}

TEST(NarInfo, IgnoresUnknownKeys) {
  const NarInfo base = NarInfo::Parse(kMinimal, kOrigin);
  const NarInfo with = NarInfo::Parse(
      "System: x86_64-linux\n" + kMinimal + "Foo: bar: baz\nX-Whatever: \nEmpty:\n", kOrigin);
  EXPECT_EQ(with, base);
}

TEST(NarInfo, AcceptsEveryHashForm) {
  const std::string nix32 = "sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0";
  const Hash h = Hash::Parse(nix32);
  for (const std::string& form :
       {nix32, "sha256:" + h.ToBase16(), "sha256:" + h.ToBase64(), h.ToSri()}) {
    const NarInfo info = NarInfo::Parse(Replace(kMinimal, nix32, form), kOrigin);
    EXPECT_EQ(info.nar_hash, h) << form;
  }
}

TEST(NarInfo, ToStringWritesNixFormatExactly) {
  const NarInfo info = NarInfo::Parse(kFull, kOrigin, kHashPart);
  EXPECT_EQ(info.ToString(), kFull);
  EXPECT_EQ(NarInfo::Parse(info.ToString(), kOrigin), info);
}

TEST(NarInfo, RoundTripsMinimalAndCustomStoreDir) {
  const NarInfo info = NarInfo::Parse(kMinimal, kOrigin);
  const std::string text = info.ToString();
  EXPECT_EQ(text,
            "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin\n"
            "URL: nar/x.nar\n"
            "Compression: bzip2\n"
            "NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n"
            "NarSize: 196040\n"
            "References: \n");
  EXPECT_EQ(NarInfo::Parse(text, kOrigin), info);

  const std::string other = info.ToString("/opt/store");
  EXPECT_TRUE(other.starts_with("StorePath: /opt/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl"));
  EXPECT_EQ(NarInfo::Parse(other, kOrigin, kHashPart, "/opt/store"), info);
  EXPECT_THROW(NarInfo::Parse(other, kOrigin), FormatError);  // wrong store dir
}

TEST(NarInfo, RoundTripsConstructedInfo) {
  NarInfo info;
  info.store_path = StorePath::FromBaseName("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-x");
  info.url = "https://elsewhere.example/nar/abc.nar.zst";
  info.compression = "zstd";
  info.file_hash = Hash::Of("file");
  info.file_size = 0;
  info.nar_hash = Hash::Of("nar");
  info.nar_size = UINT64_MAX;
  info.references = {StorePath::FromBaseName("j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-z"),
                     StorePath::FromBaseName("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-x")};
  info.deriver = StorePath::FromBaseName("3v3p0xwb2qczx3jnqn3pjfrfyp3h0wq2-x.drv");
  info.sigs = {"k1:c2ln", "k2:c2ln"};
  info.ca = "text:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
  EXPECT_EQ(NarInfo::Parse(info.ToString(), kOrigin, "0jqd0rlxzra1rs38rdxl43yh6rxchgc6"), info);
}

TEST(NarInfo, ToStringRefusesUnwritableValues) {
  NarInfo info = NarInfo::Parse(kMinimal, kOrigin);
  NarInfo bad = info;
  bad.url = "a\nStorePath: /nix/store/x";
  EXPECT_THROW(bad.ToString(), FormatError);
  bad = info;
  bad.url = "";
  EXPECT_THROW(bad.ToString(), FormatError);
  bad = info;
  bad.nar_size = 0;
  EXPECT_THROW(bad.ToString(), FormatError);
  bad = info;
  bad.sigs = {"k:a\nb"};
  EXPECT_THROW(bad.ToString(), FormatError);
  bad = info;
  bad.ca = "text:x\n";
  EXPECT_THROW(bad.ToString(), FormatError);
  bad = info;
  bad.compression = "xz\n";
  EXPECT_THROW(bad.ToString(), FormatError);
}

TEST(NarInfo, RejectsMissingRequiredFields) {
  const std::string sp = "StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin\n";
  const std::string url = "URL: nar/x.nar\n";
  const std::string nh = "NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0\n";
  const std::string ns = "NarSize: 196040\n";
  ExpectRejected(Replace(kMinimal, sp, ""), 0, "missing StorePath");
  ExpectRejected(Replace(kMinimal, url, ""), 0, "missing URL");
  ExpectRejected(Replace(kMinimal, nh, ""), 0, "missing NarHash");
  ExpectRejected(Replace(kMinimal, ns, ""), 0, "missing NarSize");
  ExpectRejected("", 0, "missing StorePath");
  // The real cache.nixos.org excerpt has no URL: not usable as a narinfo on its own.
  ExpectRejected(
      Replace(kFull, "URL: nar/1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s.nar.xz\n", ""),
      0, "missing URL");
  // Missing-field errors name the store path when it is known.
  ExpectRejected(Replace(kMinimal, nh, ""), 0,
                 "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin");
}

TEST(NarInfo, RejectsBadLines) {
  ExpectRejected(kMinimal.substr(0, kMinimal.size() - 1), 4, "does not end with a newline");
  ExpectRejected(kMinimal + "\n", 5, "no ':'");  // empty line
  ExpectRejected(kMinimal + "garbage\n", 5, "no ':' in line 'garbage'");
  ExpectRejected(kMinimal + ": value\n", 5, "empty key");
  ExpectRejected(Replace(kMinimal, "NarSize: ", "NarSize:"), 4, "no space after ':'");
  ExpectRejected(Replace(kMinimal, "URL: ", "URL:\t"), 2, "no space after ':'");
  ExpectRejected(Replace(kMinimal, "\n", "\r\n"), 1, "bad StorePath");  // CRLF: '\r' in the name
  // Hostile bytes are escaped in the message.
  ExpectRejected(kMinimal + "x\x01y\n", 5, "x\\x01y");
}

TEST(NarInfo, RejectsBadSizes) {
  for (const char* bad : {"0", "-1", "+5", " 5", "5 ", "0x10", "1e3", "abc", "",
                          "18446744073709551616", "99999999999999999999999"}) {
    const size_t line = 4;
    SCOPED_TRACE(bad);
    ExpectRejected(Replace(kMinimal, "NarSize: 196040", "NarSize: " + std::string(bad)), line,
                   "NarSize");
    if (std::string(bad) != "0")
      ExpectRejected(kMinimal + "FileSize: " + std::string(bad) + "\n", 5, "invalid FileSize");
  }
  // FileSize 0 is allowed (Nix writes it for unknown sizes); NarSize 0 is not.
  EXPECT_EQ(NarInfo::Parse(kMinimal + "FileSize: 0\n", kOrigin).file_size, 0u);
  ExpectRejected(Replace(kMinimal, "NarSize: 196040", "NarSize: 0"), 4, "NarSize is 0");
  EXPECT_EQ(
      NarInfo::Parse(Replace(kMinimal, "NarSize: 196040", "NarSize: 18446744073709551615"), kOrigin)
          .nar_size,
      UINT64_MAX);
}

TEST(NarInfo, RejectsBadStorePaths) {
  const std::string sp = "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin";
  ExpectRejected(Replace(kMinimal, sp, "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin"), 1,
                 "not in the store directory");
  ExpectRejected(Replace(kMinimal, sp, "/tmp/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl"), 1,
                 "not in the store directory");
  ExpectRejected(Replace(kMinimal, sp, sp + "/bin"), 1, "bad StorePath");
  ExpectRejected(Replace(kMinimal, sp, "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-a b"), 1,
                 "bad StorePath");
  ExpectRejected(Replace(kMinimal, sp, "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwje-curl"), 1,
                 "hash part");
  ExpectRejected(Replace(kMinimal, sp, "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-.."), 1,
                 "bad StorePath");
  ExpectRejected(Replace(kMinimal, sp, ""), 1, "bad StorePath");
}

TEST(NarInfo, RejectsWrongHashPart) {
  // The narinfo must describe the path that was asked for.
  ExpectRejected(kMinimal, 0,
                 "does not have the requested hash part 'j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h'",
                 "j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h");
  ExpectRejected(kMinimal, 0, "requested hash part", "");
  EXPECT_NO_THROW(NarInfo::Parse(kMinimal, kOrigin, std::nullopt));
}

TEST(NarInfo, RejectsBadHashes) {
  const std::string nh = "sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0";
  for (const std::string& bad :
       {std::string("1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0"),
        std::string("md5:00000000000000000000000000000000"),
        std::string("sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys"),
        std::string("sha256:eb4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0"),
        std::string("")}) {
    ExpectRejected(Replace(kMinimal, nh, bad), 3, "bad NarHash");
    ExpectRejected(kMinimal + "FileHash: " + bad + "\n", 5, "bad FileHash");
  }
}

TEST(NarInfo, RejectsBadReferencesAndDeriver) {
  ExpectRejected(kMinimal + "References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-ok bad-ref\n", 5,
                 "bad References");
  ExpectRejected(kMinimal + "References: /nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-full\n", 5,
                 "bad References");
  ExpectRejected(kMinimal + "Deriver: nonsense\n", 5, "bad Deriver");
  ExpectRejected(kMinimal + "Deriver: /nix/store/3v3p0xwb2qczx3jnqn3pjfrfyp3h0wq2-x.drv\n", 5,
                 "bad Deriver");
}

TEST(NarInfo, RejectsDuplicatesOfSingleFields) {
  ExpectRejected(kMinimal +
                     "CA: text:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n"
                     "CA: text:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n",
                 6, "CA appears more than once");
  ExpectRejected(kMinimal + "References: \nReferences: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-x\n", 6,
                 "duplicate References");
  ExpectRejected(kMinimal + "NarSize: 5\n", 5, "duplicate NarSize");
  ExpectRejected(kMinimal + "URL: other\n", 5, "duplicate URL");
  ExpectRejected(
      kMinimal + "NarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n", 5,
      "duplicate NarHash");
  ExpectRejected(kMinimal + kMinimal.substr(0, kMinimal.find('\n') + 1), 5, "duplicate StorePath");
  ExpectRejected(kMinimal + "Deriver: unknown-deriver\nDeriver: unknown-deriver\n", 6,
                 "duplicate Deriver");
  ExpectRejected(kMinimal + "Compression: xz\nCompression: zstd\n", 6, "duplicate Compression");
  // Sig is repeatable.
  EXPECT_EQ(NarInfo::Parse(kMinimal + "Sig: a:b\nSig: c:d\nSig: e:f\n", kOrigin).sigs.size(), 3u);
}

TEST(NarInfo, RejectsOtherBadValues) {
  ExpectRejected(kMinimal + "CA: sha256:abc\n", 5, "invalid CA");
  ExpectRejected(kMinimal + "Sig: \n", 5, "empty Sig");
  ExpectRejected(Replace(kMinimal, "URL: nar/x.nar", "URL: "), 2, "empty URL");
}

TEST(NarInfo, FingerprintIsNixs) {
  const NarInfo info = NarInfo::Parse(kFull, kOrigin);
  EXPECT_EQ(info.Fingerprint(),
            "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin;"
            "sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;196040;"
            "/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,"
            "/nix/store/6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115,"
            "/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12,"
            "/nix/store/yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n");
  // References are sorted (and de-duplicated, as Nix holds them in a set) regardless of order.
  NarInfo shuffled = info;
  std::swap(shuffled.references[0], shuffled.references[3]);
  shuffled.references.push_back(shuffled.references[1]);
  EXPECT_EQ(shuffled.Fingerprint(), info.Fingerprint());
  // No references: empty last field.
  const NarInfo minimal = NarInfo::Parse(kMinimal, kOrigin);
  EXPECT_TRUE(minimal.Fingerprint().ends_with(";196040;"));
  EXPECT_TRUE(
      minimal.Fingerprint("/opt/s").starts_with("1;/opt/s/syd87l2rxw8cbsxmxl853h0r6pdwhwjr"));
}

}  // namespace
}  // namespace nls
