// nix-cache-info: the file at the root of every binary cache.
#pragma once

#include <string>
#include <string_view>

namespace nls {

struct CacheInfo {
  std::string store_dir = "/nix/store";
  bool want_mass_query = false;
  int priority = 50;  // Nix's default when the field is missing; lower is preferred

  // Unknown keys are ignored. Throws FormatError on malformed lines or values.
  static CacheInfo Parse(std::string_view text, std::string_view origin);
};

}  // namespace nls
