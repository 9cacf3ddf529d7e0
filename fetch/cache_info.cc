#include "fetch/cache_info.h"

#include <charconv>

#include "fetch/error.h"

namespace nls {

namespace {

std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const size_t last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

}  // namespace

CacheInfo CacheInfo::Parse(std::string_view text, std::string_view origin) {
  CacheInfo info;
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();  // last line may lack its newline
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    auto fail = [&](const std::string& reason) {
      throw FormatError("invalid nix-cache-info " + std::string(origin) + " line " +
                        std::to_string(line_no) + ": " + reason);
    };
    if (Trim(line).empty()) continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      fail("no ':' in line " + Quoted(line) + " (not a Nix binary cache?)");
    }
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = Trim(line.substr(colon + 1));
    if (key == "StoreDir") {
      if (value.empty() || value[0] != '/' || (value.size() > 1 && value.back() == '/')) {
        fail("invalid StoreDir " + Quoted(value) + " (expected an absolute path like /nix/store)");
      }
      info.store_dir = std::string(value);
    } else if (key == "WantMassQuery") {
      if (value == "1") {
        info.want_mass_query = true;
      } else if (value == "0") {
        info.want_mass_query = false;
      } else {
        fail("invalid WantMassQuery " + Quoted(value) + " (expected 0 or 1)");
      }
    } else if (key == "Priority") {
      if (value.empty()) fail("invalid Priority '' (expected an integer)");
      int priority = 0;
      const char* end = value.data() + value.size();
      auto [ptr, ec] = std::from_chars(value.data(), end, priority);
      if (value.empty() || ec != std::errc() || ptr != end) {
        fail("invalid Priority " + Quoted(value) + " (expected an integer)");
      }
      info.priority = priority;
    }
    // Unknown keys are ignored, as Nix does.
  }
  return info;
}

}  // namespace nls
