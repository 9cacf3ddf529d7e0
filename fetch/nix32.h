// Nix's base-32 encoding ("Nix32"): alphabet 0123456789abcdfghijklmnpqrsvwxyz, bytes taken in
// Nix's bit order (the last bytes come out first). Not RFC 4648 base32.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nls::nix32 {

// Length of the encoding of `n` bytes: (n*8-1)/5+1 (0 for n == 0).
size_t EncodedLength(size_t n);

std::string Encode(std::span<const uint8_t> bytes);

// Decodes `text` into exactly `n` bytes. Returns nullopt on a bad character, a wrong length, or
// non-zero bits beyond the n bytes.
std::optional<std::vector<uint8_t>> Decode(std::string_view text, size_t n);

// True if every character is in the Nix32 alphabet.
bool IsValidChars(std::string_view text);

}  // namespace nls::nix32
