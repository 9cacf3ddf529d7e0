// nix.conf: Nix's configuration file syntax, and applying the settings the fetcher uses onto
// FetchOptions.
//
// Syntax (as Nix's config.cc): one setting per line, `name = value`; everything from `#` to the
// end of the line is a comment; the value is the rest of the line's whitespace-separated words
// joined by single spaces (no quoting, no line continuation); blank lines are ignored.
// `include FILE` applies FILE at that point and fails if it is missing; `!include FILE` ignores a
// missing FILE. A relative FILE is resolved against the including file's directory. Any other
// line (a lone word, a missing `=`) is an error naming the file and line.
//
// Settings are applied in file order: `name = v` replaces the value, `extra-name = v` appends to
// it (list settings). Settings we do not use are ignored. Used:
//   substituters, extra-substituters            -> FetchOptions::substituters
//   trusted-public-keys, extra-trusted-public-keys -> trusted_keys
//   require-sigs (true|false)                   -> require_sigs
//   netrc-file, ssl-cert-file                   -> netrc_file, ssl_cert_file
//   connect-timeout, stalled-download-timeout   -> connect_timeout_s, stalled_timeout_s (seconds)
//   download-attempts                           -> download_attempts
//   narinfo-cache-negative-ttl                  -> negative_ttl_s (seconds; 0 disables)
//   http-connections                            -> max_parallel_downloads (0: keep the default)
//
// Defaults differ from Nix on purpose: with nothing configured we use NO substituter and trust no
// key (Nix defaults to https://cache.nixos.org and cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURk
// bJ16ZPMQFGspcDShjY=): executors are often offline, and fetching from the internet must be an
// explicit decision. Put those two lines in nix.conf to get Nix's behaviour.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fetch/fetcher.h"

namespace nls {

struct NixConfSetting {
  std::string name;
  std::string value;
  std::string origin;  // "FILE:LINE", for error messages
};

struct NixConf {
  std::vector<NixConfSetting> settings;  // in application order, includes expanded
};

// Parses `text` as if it were the file `origin_file` (used for messages and to resolve relative
// includes; may be empty, then relative includes resolve against the current directory).
// Throws ConfigError naming the file and line.
NixConf ParseNixConf(std::string_view text, const std::string& origin_file);

// Reads and parses a file. Throws ConfigError if it cannot be read (or for bad syntax).
NixConf ReadNixConf(const std::string& path);

// The system configuration Nix would read: $NIX_CONF_DIR/nix.conf, else /etc/nix/nix.conf;
// an empty NixConf when the file does not exist. Plus $NIX_CONFIG (lines applied after the file),
// as Nix does.
NixConf ReadSystemNixConf();

// Applies the settings above onto `options` (other fields untouched). Apply command-line options
// afterwards so they override. Throws ConfigError for invalid values (naming the setting, the
// value and where it was set), e.g. a malformed public key or a non-numeric timeout.
void ApplyNixConf(const NixConf& conf, FetchOptions& options);

}  // namespace nls
