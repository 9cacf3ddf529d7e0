#include "fetch/hash.h"

#include <openssl/evp.h>

#include <cstring>

#include "fetch/base64.h"
#include "fetch/error.h"
#include "fetch/nix32.h"

namespace nls {

namespace {

constexpr std::string_view kHexDigits = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

[[noreturn]] void Fail(std::string_view text, std::string_view reason) {
  throw FormatError("invalid hash " + Quoted(text, 120) + ": " + std::string(reason));
}

Hash ParseBase64(std::string_view full, std::string_view b64) {
  auto decoded = base64::Decode(b64);
  if (!decoded || decoded->size() != Hash::kSize) {
    Fail(full, "not base64 of 32 bytes");
  }
  std::array<uint8_t, Hash::kSize> bytes;
  std::memcpy(bytes.data(), decoded->data(), Hash::kSize);
  return Hash(bytes);
}

}  // namespace

Hash Hash::Parse(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  constexpr std::string_view kSriPrefix = "sha256-";
  if (text.starts_with(kSriPrefix)) {
    return ParseBase64(text, text.substr(kSriPrefix.size()));
  }
  if (!text.starts_with(kPrefix)) {
    const size_t sep = text.find_first_of(":-");
    if (sep != std::string_view::npos && sep > 0) {
      Fail(text, "unsupported hash type '" +
                     std::string(text.substr(0, std::min<size_t>(sep, 16))) +
                     "' (only sha256 is supported)");
    }
    Fail(text, "missing 'sha256:' prefix");
  }
  const std::string_view rest = text.substr(kPrefix.size());
  std::array<uint8_t, kSize> bytes{};
  if (rest.size() == nix32::EncodedLength(kSize)) {  // 52
    auto decoded = nix32::Decode(rest, kSize);
    if (!decoded) Fail(text, "not a valid Nix32 sha256 hash");
    std::memcpy(bytes.data(), decoded->data(), kSize);
    return Hash(bytes);
  }
  if (rest.size() == 2 * kSize) {  // 64
    for (size_t i = 0; i < kSize; ++i) {
      const int hi = HexValue(rest[2 * i]);
      const int lo = HexValue(rest[2 * i + 1]);
      if (hi < 0 || lo < 0) Fail(text, "not a valid base16 sha256 hash");
      bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return Hash(bytes);
  }
  if (rest.size() == base64::EncodedLength(kSize)) {  // 44
    return ParseBase64(text, rest);
  }
  Fail(text, "wrong length " + std::to_string(rest.size()) +
                 " for sha256 (expected 52 Nix32, 64 base16 or 44 base64 chars)");
}

Hash Hash::Of(std::string_view data) {
  Sha256 hasher;
  hasher.Update(data);
  return hasher.Finish();
}

std::string Hash::ToNix32() const { return nix32::Encode(bytes_); }

std::string Hash::ToBase16() const {
  std::string out;
  out.reserve(2 * kSize);
  for (uint8_t b : bytes_) {
    out.push_back(kHexDigits[b >> 4]);
    out.push_back(kHexDigits[b & 0xf]);
  }
  return out;
}

std::string Hash::ToBase64() const { return base64::Encode(bytes_); }

struct Sha256::Impl {
  struct CtxFree {
    void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MD_CTX, CtxFree> ctx;
  bool finished = false;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx.reset(EVP_MD_CTX_new());
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw Error("OpenSSL: cannot initialise SHA-256");
  }
}

Sha256::~Sha256() = default;

void Sha256::Update(std::string_view data) {
  if (impl_->finished) throw Error("Sha256::Update called after Finish");
  if (data.empty()) return;
  if (EVP_DigestUpdate(impl_->ctx.get(), data.data(), data.size()) != 1) {
    throw Error("OpenSSL: SHA-256 update failed");
  }
}

Hash Sha256::Finish() {
  if (impl_->finished) throw Error("Sha256::Finish called twice");
  impl_->finished = true;
  std::array<uint8_t, Hash::kSize> bytes{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx.get(), bytes.data(), &len) != 1 || len != Hash::kSize) {
    throw Error("OpenSSL: SHA-256 finish failed");
  }
  return Hash(bytes);
}

}  // namespace nls
