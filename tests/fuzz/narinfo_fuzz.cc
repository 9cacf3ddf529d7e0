// libFuzzer target for the text formats of fetch/: narinfo, nix-cache-info, hashes, store paths
// and keys. Any input may be rejected with an nls::Error; nothing else may happen (no crash,
// no sanitizer report, no other exception). Accepted narinfos must round-trip through ToString.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fetch/cache_info.h"
#include "fetch/error.h"
#include "fetch/hash.h"
#include "fetch/narinfo.h"
#include "fetch/nix32.h"
#include "fetch/signature.h"
#include "fetch/store_path.h"

namespace {

void FuzzNarInfo(std::string_view text) {
  try {
    const nls::NarInfo info = nls::NarInfo::Parse(text, "fuzz.narinfo");
    // Anything accepted can be written back and re-read to the same value.
    const nls::NarInfo again =
        nls::NarInfo::Parse(info.ToString(), "fuzz-rewrite.narinfo", info.store_path.hash_part());
    if (!(again == info)) std::abort();
    (void)info.Fingerprint();
    static const nls::TrustedKeys keys(
        {nls::PublicKey::Parse("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")});
    (void)keys.Verifies(info);
  } catch (const nls::Error&) {
  }
}

void FuzzOthers(std::string_view text) {
  try {
    (void)nls::CacheInfo::Parse(text, "fuzz/nix-cache-info");
  } catch (const nls::Error&) {
  }
  try {
    const nls::Hash h = nls::Hash::Parse(text);
    if (!(nls::Hash::Parse(h.ToNixString()) == h) || !(nls::Hash::Parse(h.ToSri()) == h)) {
      std::abort();
    }
  } catch (const nls::Error&) {
  }
  const auto try_path = nls::StorePath::TryFromBaseName(text);
  try {
    const nls::StorePath p = nls::StorePath::FromBaseName(text);
    if (!try_path || !(*try_path == p) || p.base_name() != text) std::abort();
  } catch (const nls::Error&) {
    if (try_path) std::abort();  // the two parsers must agree
  }
  try {
    (void)nls::StorePath::FromFullPath(text);
  } catch (const nls::Error&) {
  }
  if (auto bytes = nls::nix32::Decode(text, text.size() * 5 / 8)) {
    if (nls::nix32::Encode(*bytes) != text) std::abort();
  }
  try {
    (void)nls::PublicKey::Parse(text);
  } catch (const nls::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  FuzzNarInfo(text);
  FuzzOthers(text);
  return 0;
}
