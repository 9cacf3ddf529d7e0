#include "fetch/signature.h"

#include <openssl/evp.h>

#include <memory>

#include "fetch/base64.h"
#include "fetch/error.h"

namespace nls {

namespace {

constexpr size_t kPublicKeySize = 32;
constexpr size_t kSeedSize = 32;
constexpr size_t kSecretKeySize = 64;  // seed + public key, as libsodium and Nix store it
constexpr size_t kSignatureSize = 64;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Splits "<name>:<base64>" at the first ':' (key names cannot contain ':').
// Returns false if there is no ':' or the name is empty.
bool SplitNamed(std::string_view text, std::string_view& name, std::string_view& b64) {
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  name = text.substr(0, colon);
  b64 = text.substr(colon + 1);
  return true;
}

// Parses "<name>:<base64 of `size` bytes>"; `what` names the kind of key in errors.
void ParseNamedKey(std::string_view text, size_t size, std::string_view what, std::string& name,
                   std::string& key) {
  std::string_view n, b64;
  if (!SplitNamed(text, n, b64)) {
    // Secret key material is never echoed into messages.
    const std::string shown = what == "public" ? " '" + std::string(text.substr(0, 120)) + "'" : "";
    throw FormatError("invalid " + std::string(what) + " key" + shown +
                      ": expected '<name>:<base64>'");
  }
  auto decoded = base64::Decode(b64);
  if (!decoded || decoded->size() != size) {
    throw FormatError("invalid " + std::string(what) + " key '" + std::string(n) +
                      "': not base64 of " + std::to_string(size) + " bytes");
  }
  name = std::string(n);
  key = std::move(*decoded);
}

}  // namespace

PublicKey PublicKey::Parse(std::string_view text) {
  PublicKey k;
  ParseNamedKey(text, kPublicKeySize, "public", k.name_, k.key_);
  // Make sure OpenSSL accepts it, so that Verify() failures mean "bad signature".
  PkeyPtr pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, Bytes(k.key_), k.key_.size()));
  if (!pkey) throw FormatError("invalid public key '" + k.name_ + "': not an Ed25519 key");
  return k;
}

bool PublicKey::Verify(std::string_view message, std::string_view sig) const {
  std::string_view sig_name, b64;
  if (!SplitNamed(sig, sig_name, b64) || sig_name != name_) return false;
  auto raw = base64::Decode(b64);
  if (!raw || raw->size() != kSignatureSize) return false;
  PkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, Bytes(key_), key_.size()));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!pkey || !ctx) return false;
  // Ed25519 is a one-shot scheme: no digest, EVP_DigestVerify over the whole message.
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), Bytes(*raw), raw->size(), Bytes(message), message.size()) == 1;
}

std::string PublicKey::ToString() const { return name_ + ":" + base64::Encode(key_); }

SecretKey SecretKey::Parse(std::string_view text) {
  SecretKey k;
  ParseNamedKey(text, kSecretKeySize, "secret", k.name_, k.key_);
  // The second half must be the public key that belongs to the seed.
  PkeyPtr pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, Bytes(k.key_), kSeedSize));
  unsigned char pub[kPublicKeySize];
  size_t pub_len = sizeof pub;
  if (!pkey || EVP_PKEY_get_raw_public_key(pkey.get(), pub, &pub_len) != 1 ||
      pub_len != kPublicKeySize ||
      std::string_view(k.key_).substr(kSeedSize) !=
          std::string_view(reinterpret_cast<const char*>(pub), pub_len)) {
    throw FormatError("invalid secret key '" + k.name_ +
                      "': the public half does not match the seed");
  }
  return k;
}

SecretKey SecretKey::Generate(std::string_view name) {
  if (name.empty() || name.find(':') != std::string_view::npos) {
    throw FormatError("invalid key name '" + std::string(name) + "': empty or contains ':'");
  }
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    throw Error("OpenSSL: cannot generate an Ed25519 key");
  }
  PkeyPtr pkey(raw);
  std::string key(kSecretKeySize, '\0');
  size_t seed_len = kSeedSize;
  size_t pub_len = kPublicKeySize;
  auto* out = reinterpret_cast<unsigned char*>(key.data());
  if (EVP_PKEY_get_raw_private_key(pkey.get(), out, &seed_len) != 1 || seed_len != kSeedSize ||
      EVP_PKEY_get_raw_public_key(pkey.get(), out + kSeedSize, &pub_len) != 1 ||
      pub_len != kPublicKeySize) {
    throw Error("OpenSSL: cannot export an Ed25519 key");
  }
  SecretKey k;
  k.name_ = std::string(name);
  k.key_ = std::move(key);
  return k;
}

std::string SecretKey::Sign(std::string_view message) const {
  PkeyPtr pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, Bytes(key_), kSeedSize));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  unsigned char sig[kSignatureSize];
  size_t sig_len = sizeof sig;
  if (!pkey || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &sig_len, Bytes(message), message.size()) != 1 ||
      sig_len != kSignatureSize) {
    throw Error("OpenSSL: Ed25519 signing with key '" + name_ + "' failed");
  }
  return name_ + ":" + base64::Encode(std::span<const uint8_t>(sig, sig_len));
}

PublicKey SecretKey::ToPublicKey() const {
  return PublicKey::Parse(name_ + ":" + base64::Encode(std::string_view(key_).substr(kSeedSize)));
}

std::string SecretKey::ToString() const { return name_ + ":" + base64::Encode(key_); }

bool TrustedKeys::Verifies(const NarInfo& info, std::string_view store_dir) const {
  if (keys_.empty() || info.sigs.empty()) return false;
  const std::string fingerprint = info.Fingerprint(store_dir);
  for (const std::string& sig : info.sigs) {
    for (const PublicKey& key : keys_) {
      if (key.Verify(fingerprint, sig)) return true;
    }
  }
  return false;
}

}  // namespace nls
