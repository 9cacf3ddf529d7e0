// Standard base64 (RFC 4648, "+/" alphabet, "=" padding), as used by Nix for hashes, keys and
// signatures. A thin strict wrapper over OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace nls::base64 {

// Length of the padded encoding of `n` bytes: 4 * ceil(n / 3).
size_t EncodedLength(size_t n);

std::string Encode(std::span<const uint8_t> bytes);
std::string Encode(std::string_view bytes);

// Decodes padded base64. Returns nullopt unless `text` is a multiple of 4 characters long, uses
// only the alphabet, and has at most two '=' and only at the end. No whitespace is accepted.
std::optional<std::string> Decode(std::string_view text);

}  // namespace nls::base64
