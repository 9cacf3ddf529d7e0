#include "fuse/store_config.h"

#include <sys/stat.h>

#include "fetch/error.h"
#include "fetch/nix_conf.h"
#include "fetch/signature.h"
#include "fetch/store_path.h"

namespace nls {
namespace {

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Reads nix.conf into `fetch` (substituters, keys, require-sigs, timeouts, ...).
void ApplyNixConfFile(const std::string& file, FetchOptions& fetch);

}  // namespace

StoreSetup BuildStoreSetup(const StoreOptions& options, const std::string& default_nix_conf) {
  StoreSetup setup;
  std::string conf;
  if (options.nix_conf) {
    conf = *options.nix_conf;
    if (!FileExists(conf)) {
      throw ConfigError("--nix-conf " + Quoted(conf) + ": no such file");
    }
  } else if (!default_nix_conf.empty() && FileExists(default_nix_conf)) {
    conf = default_nix_conf;
  }
  if (!conf.empty()) {
    ApplyNixConfFile(conf, setup.fetch);
    setup.nix_conf_used = conf;
  }
  if (!options.substituters.empty()) setup.fetch.substituters = options.substituters;
  if (!options.trusted_public_keys.empty()) {
    TrustedKeys keys;
    for (const std::string& k : options.trusted_public_keys) {
      try {
        keys.Add(PublicKey::Parse(k));
      } catch (const Error& e) {
        throw ConfigError("--trusted-public-key " + Quoted(k) + ": " + e.what());
      }
    }
    setup.fetch.trusted_keys = std::move(keys);
  }
  if (options.no_require_sigs) setup.fetch.require_sigs = false;
  if (options.negative_ttl_s) setup.fetch.negative_ttl_s = *options.negative_ttl_s;
  if (setup.fetch.substituters.empty()) {
    throw ConfigError("no substituter configured: give --substituter URL" +
                      std::string(conf.empty() ? "" : " or set substituters in " + conf));
  }
  if (setup.fetch.require_sigs && setup.fetch.trusted_keys.empty()) {
    throw ConfigError(
        "signatures are required but no trusted public key is configured: give "
        "--trusted-public-key NAME:KEY" +
        std::string(conf.empty() ? "" : " (or trusted-public-keys in " + conf + ")") +
        ", or --no-require-sigs");
  }

  setup.cache.dir = options.cache_dir;
  setup.cache.max_bytes = options.cache_size;
  setup.cache.min_free_bytes = options.min_free_space;
  setup.cache.pins = options.pins;
  return setup;
}

namespace {

void ApplyNixConfFile(const std::string& file, FetchOptions& fetch) {
  ApplyNixConf(ReadNixConf(file), fetch);
}

}  // namespace

}  // namespace nls
