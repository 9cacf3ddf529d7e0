#include "fetch/nix32.h"

#include <array>

namespace nls::nix32 {

namespace {

constexpr std::string_view kAlphabet = "0123456789abcdfghijklmnpqrsvwxyz";

// Maps a character to its 5-bit value, or 0xff if it is not in the alphabet.
constexpr std::array<uint8_t, 256> MakeReverseTable() {
  std::array<uint8_t, 256> table{};
  for (auto& v : table) v = 0xff;
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<uint8_t>(i);
  }
  return table;
}

constexpr std::array<uint8_t, 256> kReverse = MakeReverseTable();

}  // namespace

size_t EncodedLength(size_t n) { return n == 0 ? 0 : (n * 8 - 1) / 5 + 1; }

std::string Encode(std::span<const uint8_t> bytes) {
  const size_t len = EncodedLength(bytes.size());
  std::string out;
  out.reserve(len);
  // Character k (output from k = len-1 down to 0) holds the 5 bits starting at bit 5k of the
  // little-endian bit string formed by the bytes.
  for (size_t k = len; k-- > 0;) {
    const size_t bit = k * 5;
    const size_t i = bit / 8;
    const unsigned j = bit % 8;
    unsigned v = bytes[i] >> j;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned>(bytes[i + 1]) << (8 - j);
    out.push_back(kAlphabet[v & 0x1f]);
  }
  return out;
}

std::optional<std::vector<uint8_t>> Decode(std::string_view text, size_t n) {
  if (text.size() != EncodedLength(n)) return std::nullopt;
  std::vector<uint8_t> out(n, 0);
  const size_t len = text.size();
  for (size_t k = 0; k < len; ++k) {
    const uint8_t digit = kReverse[static_cast<uint8_t>(text[len - 1 - k])];
    if (digit == 0xff) return std::nullopt;
    const size_t bit = k * 5;
    const size_t i = bit / 8;
    const unsigned j = bit % 8;
    out[i] |= static_cast<uint8_t>(digit << j);
    const unsigned carry = static_cast<unsigned>(digit) >> (8 - j);
    if (i + 1 < n) {
      out[i + 1] |= static_cast<uint8_t>(carry);
    } else if (carry != 0) {
      return std::nullopt;  // bits beyond the last byte must be zero
    }
  }
  return out;
}

bool IsValidChars(std::string_view text) {
  for (char c : text) {
    if (kReverse[static_cast<uint8_t>(c)] == 0xff) return false;
  }
  return true;
}

}  // namespace nls::nix32
