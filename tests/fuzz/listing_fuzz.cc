// libFuzzer target: NAR listings. Parsing must either throw FormatError or give a tree that
// survives ListingToJson -> ParseListing unchanged (for valid UTF-8 names).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetch/error.h"
#include "fetch/nar_listing.h"

namespace {

bool ValidUtf8Names(const nls::ListingNode& n) {
  auto valid = [](std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      if (len == 0 || i + len > s.size()) return false;
      for (size_t k = 1; k < len; ++k) {
        if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
      }
      i += len;
    }
    return true;
  };
  if (!valid(n.target)) return false;
  for (const auto& [name, child] : n.entries) {
    if (!valid(name) || !ValidUtf8Names(child)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  nls::ListingNode root;
  try {
    root = nls::ParseListing(json, "fuzz.ls");
  } catch (const nls::FormatError&) {
    return 0;
  }
  if (!ValidUtf8Names(root)) return 0;
  std::string again = nls::ListingToJson(root);
  nls::ListingNode back = nls::ParseListing(again, "fuzz-roundtrip.ls");
  if (!(back == root)) std::abort();
  if (nls::ListingToJson(back) != again) std::abort();
  return 0;
}
