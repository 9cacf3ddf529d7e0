// SHA-256 hashes in every textual form Nix uses, and a streaming hasher.
//
// Forms accepted by Hash::Parse: "sha256:" followed by Nix32 (52 chars), base16 (64) or
// base64 (44); SRI "sha256-<base64>". Only SHA-256 is supported: anything else is a FormatError.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace nls {

class Hash {
 public:
  static constexpr size_t kSize = 32;

  Hash() = default;
  explicit Hash(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Parses any of the forms above. Throws FormatError naming the input on failure.
  static Hash Parse(std::string_view text);

  // SHA-256 of `data` in one call.
  static Hash Of(std::string_view data);

  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }

  std::string ToNix32() const;       // 52 chars, no prefix
  std::string ToBase16() const;      // 64 lowercase hex chars, no prefix
  std::string ToBase64() const;      // 44 chars, no prefix
  std::string ToNixString() const {  // "sha256:<nix32>", the form narinfos and fingerprints use
    return "sha256:" + ToNix32();
  }
  std::string ToSri() const { return "sha256-" + ToBase64(); }

  bool operator==(const Hash&) const = default;

 private:
  std::array<uint8_t, kSize> bytes_{};
};

// Incremental SHA-256 (OpenSSL EVP). Update() any number of times, then Finish() once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  Hash Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nls
