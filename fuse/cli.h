// The command line of nix-lazy-store: subcommands, their options and their help texts.
//
// Parsing is pure (no file system, no network): it only checks syntax and value formats. A
// mistake throws UsageError whose message says what is wrong; main() prints it and exits 2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fetch/error.h"
#include "fetch/log.h"

namespace nls {

// A command line mistake (unknown option, missing or bad value, missing operand).
class UsageError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

// Options that configure fetching and the local cache (shared by mount and prefetch).
struct StoreOptions {
  std::vector<std::string> substituters;         // --substituter (repeatable)
  std::vector<std::string> trusted_public_keys;  // --trusted-public-key (repeatable)
  bool no_require_sigs = false;                  // --no-require-sigs
  std::optional<std::string> nix_conf;  // --nix-conf FILE (default: /etc/nix/nix.conf if it exists)
  std::string cache_dir = "/var/cache/nix-lazy-store";  // --cache-dir
  uint64_t cache_size = 0;                              // --cache-size SIZE (0 = unlimited)
  uint64_t min_free_space = 0;    // --min-free-space SIZE: free space kept on the cache's disk
  std::vector<std::string> pins;  // --pin STORE-PATH (repeatable), base names
  // --negative-ttl SECONDS; when absent, nix.conf's narinfo-cache-negative-ttl, else 2 s.
  std::optional<double> negative_ttl_s;
  bool prefetch_references = true;    // --[no-]prefetch-references
  std::optional<LogLevel> log_level;  // --log-level LEVEL
};

struct MountCommand {
  StoreOptions store;
  std::string mountpoint;
  bool allow_other = false;    // --allow-other
  bool foreground = false;     // --foreground
  std::string metrics_listen;  // --metrics-listen ADDR:PORT ("" = off)
  std::string log_file;        // --log-file FILE (append; default stderr)
};

struct PrefetchCommand {
  StoreOptions store;
  std::vector<std::string> paths;  // base names ("<hash>-<name>"), from full or base form
  int jobs = 4;                    // --jobs N
};

struct StatusCommand {
  std::string mountpoint;
  bool json = false;  // --json
};

struct GcCommand {
  std::string cache_dir;
  uint64_t max_size = 0;
  std::optional<LogLevel> log_level;
};

struct FsckCommand {
  std::string cache_dir;
  std::optional<LogLevel> log_level;
};

struct HelpCommand {
  std::string text;  // printed to stdout, exit 0
};

struct VersionCommand {};

using Command = std::variant<MountCommand, PrefetchCommand, StatusCommand, GcCommand, FsckCommand,
                             HelpCommand, VersionCommand>;

// Parses argv[1..] (argv[0] is the program name). Throws UsageError.
Command ParseCommandLine(const std::vector<std::string>& args);

// "host:port" for --metrics-listen: an IPv4 address (or "localhost") and a port 1..65535.
// Throws UsageError.
struct ListenAddress {
  std::string host;  // dotted quad
  uint16_t port = 0;
};
ListenAddress ParseListenAddress(std::string_view text);

// Accepts "/nix/store/<hash>-<name>[/...]" or "<hash>-<name>"; returns the base name. Throws
// UsageError naming the argument when it is not a store path.
std::string StorePathArgument(std::string_view text, std::string_view store_dir = "/nix/store");

std::string MainHelp();

}  // namespace nls
