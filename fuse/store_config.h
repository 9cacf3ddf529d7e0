// Turns the command line's fetch/cache options (and nix.conf) into FetchOptions and
// CacheOptions.
//
// nix.conf: --nix-conf FILE when given (it must exist), else /etc/nix/nix.conf when it exists.
// It supplies substituters, trusted-public-keys, require-sigs, connect-timeout, ... . Options
// given on the command line win: --substituter / --trusted-public-key values, when any are
// given, replace nix.conf's lists; --no-require-sigs turns signature checks off; --negative-ttl
// overrides narinfo-cache-negative-ttl. When neither sets it the negative TTL is 2 s, not Nix's
// 3600 s: an executor often asks for a path moments before the Nix server has pushed it.
#pragma once

#include <string>

#include "cache/store_cache.h"
#include "fetch/fetcher.h"
#include "fuse/cli.h"

namespace nls {

struct StoreSetup {
  FetchOptions fetch;
  CacheOptions cache;
  std::string nix_conf_used;  // "" when none was read
};

// Throws ConfigError naming the file / option and the cause.
StoreSetup BuildStoreSetup(const StoreOptions& options,
                           const std::string& default_nix_conf = "/etc/nix/nix.conf");

}  // namespace nls
