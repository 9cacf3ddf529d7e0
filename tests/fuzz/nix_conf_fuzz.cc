// libFuzzer target for nix.conf parsing and applying (fetch/nix_conf.h). Any input may be
// rejected with an nls::Error; nothing else may happen. Inputs that mention "include" are
// skipped: includes read arbitrary files, which is not what this target explores.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fetch/error.h"
#include "fetch/fetcher.h"
#include "fetch/nix_conf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (text.find("include") != std::string_view::npos) return 0;
  try {
    const nls::NixConf conf = nls::ParseNixConf(text, "/nonexistent/fuzz/nix.conf");
    nls::FetchOptions options;
    nls::ApplyNixConf(conf, options);
  } catch (const nls::Error&) {
  }
  return 0;
}
