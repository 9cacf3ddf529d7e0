// nix-cache-info: the file at the root of every binary cache.
#pragma once

#include <string>
#include <string_view>

namespace nls {

struct CacheInfo {
  std::string store_dir = "/nix/store";
  bool want_mass_query = false;
  int priority = 50;  // Nix's default when the field is missing; lower is preferred

  // "Key: value" lines; spaces around the value, blank lines, "\r" and a missing final newline
  // are tolerated; unknown keys are ignored. StoreDir must be absolute without a trailing '/'
  // (comparing it with ours is the caller's job), WantMassQuery 0 or 1, Priority an int.
  // Throws FormatError naming `origin` and the line on malformed lines or values; unlike Nix, a
  // non-blank line without ':' is an error (an HTML page is not a binary cache).
  static CacheInfo Parse(std::string_view text, std::string_view origin);
};

}  // namespace nls
