#include "fetch/base64.h"

#include <openssl/evp.h>

namespace nls::base64 {

namespace {

bool IsAlphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

size_t EncodedLength(size_t n) { return (n + 2) / 3 * 4; }

std::string Encode(std::span<const uint8_t> bytes) {
  std::string out(EncodedLength(bytes.size()), '\0');
  if (bytes.empty()) return out;
  // EVP_EncodeBlock writes a terminating NUL after the output; reserve room for it.
  std::string buffer(out.size() + 1, '\0');
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(buffer.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  buffer.resize(static_cast<size_t>(written));
  return buffer;
}

std::string Encode(std::string_view bytes) {
  return Encode(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::optional<std::string> Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.empty()) return std::string();
  size_t padding = 0;
  if (text.back() == '=') ++padding;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++padding;
  for (size_t i = 0; i < text.size() - padding; ++i) {
    if (!IsAlphabet(text[i])) return std::nullopt;
  }
  // "x===" style or "=" in the middle is rejected by the loop above (padding is at most 2).
  std::string buffer(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(buffer.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) != buffer.size()) return std::nullopt;
  // EVP_DecodeBlock does not strip the bytes that padding stands for.
  buffer.resize(buffer.size() - padding);
  return buffer;
}

}  // namespace nls::base64
