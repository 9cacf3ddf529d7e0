#include "cache/size.h"

#include <string>

#include "fetch/error.h"

namespace nls {

uint64_t ParseSize(std::string_view text) {
  auto bad = [&](const char* why) -> ConfigError {
    return ConfigError("invalid size '" + std::string(text) + "': " + why +
                       " (expected a number of bytes with an optional K, M, G or T suffix)");
  };
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t digit = uint64_t(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) throw bad("too large");
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) throw bad("no number");
  std::string suffix;
  for (char c : text.substr(i)) suffix.push_back(char(c >= 'a' && c <= 'z' ? c - 32 : c));
  int shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      case 'B':
        shift = 0;
        break;
      default:
        throw bad("unknown suffix");
    }
    std::string_view rest = std::string_view(suffix).substr(1);
    if (suffix[0] == 'B' ? !rest.empty() : !(rest.empty() || rest == "B" || rest == "IB"))
      throw bad("unknown suffix");
  }
  if (shift && value > (UINT64_MAX >> shift)) throw bad("too large");
  return value << shift;
}

}  // namespace nls
