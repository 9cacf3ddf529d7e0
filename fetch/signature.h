// Ed25519 signatures over narinfo fingerprints, with keys in Nix's "name:base64" form.
// All cryptography is OpenSSL's libcrypto.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fetch/narinfo.h"

namespace nls {

// "<name>:<base64 of 32 bytes>", as in trusted-public-keys.
class PublicKey {
 public:
  static PublicKey Parse(std::string_view text);  // throws FormatError
  const std::string& name() const { return name_; }
  // True if `sig` ("<name>:<base64 64 bytes>") is by this key (same name) and verifies over
  // `message`. A malformed signature is simply false (never throws).
  bool Verify(std::string_view message, std::string_view sig) const;
  std::string ToString() const;

 private:
  std::string name_;
  std::string key_;  // 32 raw bytes
};

// "<name>:<base64 of 64 bytes>" (seed followed by public key), as made by
// `nix-store --generate-binary-cache-key`. Used by tests and tools to sign.
class SecretKey {
 public:
  static SecretKey Parse(std::string_view text);  // throws FormatError
  static SecretKey Generate(std::string_view name);
  std::string Sign(std::string_view message) const;  // returns "<name>:<base64 sig>"
  PublicKey ToPublicKey() const;
  std::string ToString() const;

 private:
  std::string name_;
  std::string key_;  // 64 raw bytes
};

// A set of trusted keys. A narinfo is valid if any of its Sig lines verifies against any key.
class TrustedKeys {
 public:
  TrustedKeys() = default;
  explicit TrustedKeys(std::vector<PublicKey> keys) : keys_(std::move(keys)) {}
  void Add(PublicKey key) { keys_.push_back(std::move(key)); }
  bool empty() const { return keys_.empty(); }
  const std::vector<PublicKey>& keys() const { return keys_; }

  // True if at least one signature of `info` verifies over its fingerprint. No keys or no Sig
  // lines: false. Unlike Nix, content-addressed (CA) paths are not trusted without a signature.
  bool Verifies(const NarInfo& info, std::string_view store_dir = kDefaultStoreDir) const;

 private:
  std::vector<PublicKey> keys_;
};

}  // namespace nls
