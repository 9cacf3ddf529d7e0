#include "fuse/cli.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

#include "cache/size.h"
#include "fetch/store_path.h"

namespace nls {
namespace {

const char kMountHelp[] =
    "Usage: nix-lazy-store mount [OPTIONS] MOUNTPOINT\n"
    "\n"
    "Mounts a lazy, read-only Nix store at MOUNTPOINT (normally /nix/store). A store path is\n"
    "fetched from the substituters, verified and cached on first use.\n"
    "Without --foreground, returns once the mount is ready (non-zero exit if it failed).\n"
    "\n"
    "Options:\n"
    "  --substituter URL           binary cache: file://, http(s)://, s3://...; repeatable\n"
    "  --trusted-public-key KEY    NAME:BASE64 public key; repeatable\n"
    "  --no-require-sigs           accept narinfos without a trusted signature\n"
    "  --nix-conf FILE             read substituters/keys/... from FILE\n"
    "                              (default /etc/nix/nix.conf when it exists)\n"
    "  --cache-dir DIR             local cache (default /var/cache/nix-lazy-store)\n"
    "  --cache-size SIZE           disk budget of the cache, e.g. 20G (default unlimited)\n"
    "  --min-free-space SIZE       evict (paths in use too) to keep this much free on the\n"
    "                              cache's file system (default 0: no floor)\n"
    "  --pin STORE-PATH            keep this path and its closure cached; repeatable\n"
    "  --negative-ttl SECONDS      remember absent paths this long (default 2)\n"
    "  --prefetch-references      fetch the references of fetched paths in the background\n"
    "  --no-prefetch-references    (default: on)\n"
    "  --allow-other               let every user access the mount\n"
    "  --foreground                do not detach\n"
    "  --log-level LEVEL           error, warn, info (default) or debug\n"
    "  --log-file FILE             append log lines to FILE instead of stderr\n"
    "  --metrics-listen ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
    "  --help                      show this text\n";

const char kPrefetchHelp[] =
    "Usage: nix-lazy-store prefetch [OPTIONS] STORE-PATH...\n"
    "\n"
    "Fills the cache directory with the closures of the given store paths.\n"
    "\n"
    "Options: --substituter, --trusted-public-key, --no-require-sigs, --nix-conf, --cache-dir,\n"
    "  --cache-size, --min-free-space, --pin, --negative-ttl, --log-level (as for mount), and\n"
    "  --jobs N                    parallel downloads (default 4)\n"
    "  --help                      show this text\n";

const char kStatusHelp[] =
    "Usage: nix-lazy-store status [--json] MOUNTPOINT\n"
    "\n"
    "Shows the figures of a mounted lazy store: paths and bytes cached, hits, misses,\n"
    "downloads in flight, bytes fetched, evictions, errors. They are read from the extended\n"
    "attributes user.nix-lazy-store.* of MOUNTPOINT.\n";

const char kGcHelp[] =
    "Usage: nix-lazy-store gc --cache-dir DIR --max-size SIZE\n"
    "\n"
    "Evicts least recently used paths (except pinned ones) until the cache uses at most SIZE.\n"
    "The cache must not be in use by a mount.\n";

const char kFsckHelp[] =
    "Usage: nix-lazy-store fsck --cache-dir DIR\n"
    "\n"
    "Checks every chunk and metadata file of the cache, dropping damaged paths. Exits non-zero\n"
    "only when damage remains that could not be repaired.\n";

class ArgReader {
 public:
  ArgReader(const std::vector<std::string>& args, size_t start, std::string_view command)
      : args_(args), pos_(start), command_(command) {}

  bool done() const { return pos_ >= args_.size(); }
  const std::string& next() { return args_[pos_++]; }

  // For "--opt VALUE" and "--opt=VALUE". `arg` is the option as given.
  std::string Value(const std::string& option, const std::optional<std::string>& inline_value) {
    if (inline_value) return *inline_value;
    if (done()) throw UsageError(Prefix() + "option " + option + " needs a value");
    return next();
  }
  std::string Prefix() const { return "nix-lazy-store " + std::string(command_) + ": "; }

 private:
  const std::vector<std::string>& args_;
  size_t pos_;
  std::string_view command_;
};

// Splits "--name=value".
std::pair<std::string, std::optional<std::string>> SplitOption(const std::string& arg) {
  auto eq = arg.find('=');
  if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
    return {arg.substr(0, eq), arg.substr(eq + 1)};
  }
  return {arg, std::nullopt};
}

double ParseSeconds(const std::string& prefix, const std::string& option, const std::string& v) {
  double out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || ptr != v.data() + v.size() || !std::isfinite(out) || out < 0) {
    throw UsageError(prefix + option + " wants a non-negative number of seconds, not " + Quoted(v));
  }
  return out;
}

uint64_t ParseSizeArg(const std::string& prefix, const std::string& option, const std::string& v) {
  try {
    return ParseSize(v);
  } catch (const Error& e) {
    throw UsageError(prefix + option + ": " + e.what());
  }
}

LogLevel ParseLevelArg(const std::string& prefix, const std::string& v) {
  auto level = ParseLogLevel(v);
  if (!level) {
    throw UsageError(prefix + "--log-level wants error, warn, info or debug, not " + Quoted(v));
  }
  return *level;
}

// Handles one option shared by mount and prefetch. Returns false if `name` is not one of them.
bool StoreOption(ArgReader& r, const std::string& name, const std::optional<std::string>& value,
                 StoreOptions& s) {
  const std::string p = r.Prefix();
  auto no_value = [&] {
    if (value) throw UsageError(p + "option " + name + " takes no value");
  };
  if (name == "--substituter") {
    std::string url = r.Value(name, value);
    if (url.empty()) throw UsageError(p + "--substituter needs a URL");
    s.substituters.push_back(url);
  } else if (name == "--trusted-public-key") {
    std::string key = r.Value(name, value);
    if (key.find(':') == std::string::npos) {
      throw UsageError(p + "--trusted-public-key wants NAME:BASE64, not " + Quoted(key));
    }
    s.trusted_public_keys.push_back(key);
  } else if (name == "--no-require-sigs") {
    no_value();
    s.no_require_sigs = true;
  } else if (name == "--nix-conf") {
    s.nix_conf = r.Value(name, value);
    if (s.nix_conf->empty()) throw UsageError(p + "--nix-conf needs a file name");
  } else if (name == "--cache-dir") {
    s.cache_dir = r.Value(name, value);
    if (s.cache_dir.empty()) throw UsageError(p + "--cache-dir needs a directory");
  } else if (name == "--cache-size") {
    s.cache_size = ParseSizeArg(p, name, r.Value(name, value));
  } else if (name == "--min-free-space") {
    s.min_free_space = ParseSizeArg(p, name, r.Value(name, value));
  } else if (name == "--pin") {
    s.pins.push_back(StorePathArgument(r.Value(name, value)));
  } else if (name == "--negative-ttl") {
    s.negative_ttl_s = ParseSeconds(p, name, r.Value(name, value));
  } else if (name == "--prefetch-references") {
    no_value();
    s.prefetch_references = true;
  } else if (name == "--no-prefetch-references") {
    no_value();
    s.prefetch_references = false;
  } else if (name == "--log-level") {
    s.log_level = ParseLevelArg(p, r.Value(name, value));
  } else {
    return false;
  }
  return true;
}

// How a command reads its words (everything after the command name).
struct Syntax {
  const char* help;           // returned for --help or -h
  bool inline_values = true;  // "--opt=VALUE" is read as option "--opt" with VALUE
  bool double_dash = false;   // "--" makes every later word an operand
  bool dash_operand = false;  // a lone "-" is an operand (else an unknown option)
};

// Receives one operand.
using OperandHandler = std::function<void(const std::string& operand)>;
// Handles one option (reading its value through the ArgReader when `value` is empty and the
// option takes one). Returns false if `name` is not an option of the command.
using OptionHandler =
    std::function<bool(const std::string& name, const std::optional<std::string>& value)>;

// The word loop shared by every command. An operand is an empty word or one not starting with
// '-'. A command without operands (`on_operand` empty) rejects a non-empty one as an
// "unexpected operand" and treats an empty word as an option. Returns the command's help when
// --help or -h comes (the words after it are not read); throws UsageError for an option that
// `on_option` does not know.
std::optional<HelpCommand> ReadWords(ArgReader& r, const Syntax& syntax,
                                     const OperandHandler& on_operand,
                                     const OptionHandler& on_option) {
  bool only_operands = false;
  while (!r.done()) {
    const std::string& arg = r.next();
    const bool word = !arg.empty() && arg[0] != '-';
    if (!on_operand && word) {
      throw UsageError(r.Prefix() + "unexpected operand " + Quoted(arg) + " (see --help)");
    }
    if (on_operand &&
        (only_operands || word || arg.empty() || (syntax.dash_operand && arg == "-"))) {
      on_operand(arg);
      continue;
    }
    if (syntax.double_dash && arg == "--") {
      only_operands = true;
      continue;
    }
    auto [name, value] =
        syntax.inline_values ? SplitOption(arg) : std::make_pair(arg, std::optional<std::string>());
    if (name == "--help" || name == "-h") return HelpCommand{syntax.help};
    if (!on_option(name, value)) {
      throw UsageError(r.Prefix() + "unknown option " + Quoted(arg) + " (see --help)");
    }
  }
  return std::nullopt;
}

Command ParseMount(const std::vector<std::string>& args) {
  ArgReader r(args, 1, "mount");
  MountCommand m;
  std::vector<std::string> operands;
  auto help = ReadWords(
      r, {.help = kMountHelp, .double_dash = true, .dash_operand = true},
      [&](const std::string& operand) { operands.push_back(operand); },
      [&](const std::string& name, const std::optional<std::string>& value) {
        if (StoreOption(r, name, value, m.store)) return true;
        if (name == "--allow-other" && !value) {
          m.allow_other = true;
        } else if (name == "--foreground" && !value) {
          m.foreground = true;
        } else if (name == "--metrics-listen") {
          m.metrics_listen = r.Value(name, value);
          ParseListenAddress(m.metrics_listen);
        } else if (name == "--log-file") {
          m.log_file = r.Value(name, value);
          if (m.log_file.empty()) throw UsageError(r.Prefix() + "--log-file needs a file name");
        } else if ((name == "--allow-other" || name == "--foreground") && value) {
          throw UsageError(r.Prefix() + "option " + name + " takes no value");
        } else {
          return false;
        }
        return true;
      });
  if (help) return *help;
  if (operands.empty()) throw UsageError(r.Prefix() + "missing MOUNTPOINT (see --help)");
  if (operands.size() > 1) {
    throw UsageError(r.Prefix() + "expected one MOUNTPOINT, got " +
                     std::to_string(operands.size()) + " operands (" + Quoted(operands[1]) +
                     " is extra)");
  }
  m.mountpoint = operands[0];
  return m;
}

Command ParsePrefetch(const std::vector<std::string>& args) {
  ArgReader r(args, 1, "prefetch");
  PrefetchCommand c;
  auto help = ReadWords(
      r, {.help = kPrefetchHelp, .double_dash = true},
      [&](const std::string& operand) { c.paths.push_back(StorePathArgument(operand)); },
      [&](const std::string& name, const std::optional<std::string>& value) {
        if (StoreOption(r, name, value, c.store)) return true;
        if (name != "--jobs") return false;
        std::string v = r.Value(name, value);
        int n = 0;
        auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || ptr != v.data() + v.size() || n < 1 || n > 256) {
          throw UsageError(r.Prefix() + "--jobs wants a number from 1 to 256, not " + Quoted(v));
        }
        c.jobs = n;
        return true;
      });
  if (help) return *help;
  if (c.paths.empty()) throw UsageError(r.Prefix() + "missing STORE-PATH (see --help)");
  return c;
}

Command ParseStatus(const std::vector<std::string>& args) {
  ArgReader r(args, 1, "status");
  StatusCommand c;
  std::vector<std::string> operands;
  auto help = ReadWords(
      r, {.help = kStatusHelp, .inline_values = false},
      [&](const std::string& operand) { operands.push_back(operand); },
      [&](const std::string& name, const std::optional<std::string>&) {
        if (name != "--json") return false;
        c.json = true;
        return true;
      });
  if (help) return *help;
  if (operands.size() != 1) throw UsageError(r.Prefix() + "expected one MOUNTPOINT (see --help)");
  c.mountpoint = operands[0];
  return c;
}

// Handles an option shared by gc and fsck (--cache-dir, --log-level). Returns false if `name` is
// not one of them.
bool CacheDirOption(ArgReader& r, const std::string& name, const std::optional<std::string>& value,
                    std::string& cache_dir, std::optional<LogLevel>& log_level) {
  if (name == "--cache-dir") {
    cache_dir = r.Value(name, value);
  } else if (name == "--log-level") {
    log_level = ParseLevelArg(r.Prefix(), r.Value(name, value));
  } else {
    return false;
  }
  return true;
}

Command ParseGc(const std::vector<std::string>& args) {
  ArgReader r(args, 1, "gc");
  GcCommand c;
  bool have_size = false;
  auto help = ReadWords(r, {.help = kGcHelp}, nullptr,
                        [&](const std::string& name, const std::optional<std::string>& value) {
                          if (CacheDirOption(r, name, value, c.cache_dir, c.log_level)) return true;
                          if (name != "--max-size") return false;
                          c.max_size = ParseSizeArg(r.Prefix(), name, r.Value(name, value));
                          have_size = true;
                          return true;
                        });
  if (help) return *help;
  if (c.cache_dir.empty()) throw UsageError(r.Prefix() + "--cache-dir DIR is required");
  if (!have_size) throw UsageError(r.Prefix() + "--max-size SIZE is required");
  return c;
}

Command ParseFsck(const std::vector<std::string>& args) {
  ArgReader r(args, 1, "fsck");
  FsckCommand c;
  auto help = ReadWords(r, {.help = kFsckHelp}, nullptr,
                        [&](const std::string& name, const std::optional<std::string>& value) {
                          return CacheDirOption(r, name, value, c.cache_dir, c.log_level);
                        });
  if (help) return *help;
  if (c.cache_dir.empty()) throw UsageError(r.Prefix() + "--cache-dir DIR is required");
  return c;
}

}  // namespace

std::string MainHelp() {
  return "Usage: nix-lazy-store COMMAND [OPTIONS] ...\n"
         "\n"
         "A lazy, read-only /nix/store backed by Nix binary caches.\n"
         "\n"
         "Commands:\n"
         "  mount MOUNTPOINT            mount the lazy store\n"
         "  prefetch STORE-PATH...      fill the cache with closures\n"
         "  status MOUNTPOINT           show the figures of a mount\n"
         "  gc --cache-dir DIR --max-size SIZE   shrink a cache\n"
         "  fsck --cache-dir DIR        check and repair a cache\n"
         "\n"
         "`nix-lazy-store COMMAND --help` describes each command.\n";
}

ListenAddress ParseListenAddress(std::string_view text) {
  const std::string prefix =
      "nix-lazy-store mount: --metrics-listen wants ADDR:PORT, not " + Quoted(text);
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) throw UsageError(prefix);
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p == 0 ||
      p > 65535) {
    throw UsageError(prefix + " (bad port)");
  }
  ListenAddress out;
  out.port = static_cast<uint16_t>(p);
  if (host == "localhost") {
    out.host = "127.0.0.1";
    return out;
  }
  // Dotted quad.
  int parts = 0;
  size_t i = 0;
  while (i <= host.size()) {
    size_t j = host.find('.', i);
    if (j == std::string_view::npos) j = host.size();
    std::string_view part = host.substr(i, j - i);
    unsigned v = 0;
    auto [q, e] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || part.size() > 3 || e != std::errc() || q != part.data() + part.size() ||
        v > 255) {
      throw UsageError(prefix + " (bad IPv4 address)");
    }
    ++parts;
    i = j + 1;
    if (j == host.size()) break;
  }
  if (parts != 4) throw UsageError(prefix + " (bad IPv4 address)");
  out.host = std::string(host);
  return out;
}

std::string StorePathArgument(std::string_view text, std::string_view store_dir) {
  std::string_view base = text;
  std::string dir_prefix = std::string(store_dir) + "/";
  if (base.substr(0, dir_prefix.size()) == dir_prefix) {
    base.remove_prefix(dir_prefix.size());
    auto slash = base.find('/');
    if (slash != std::string_view::npos) base = base.substr(0, slash);
  }
  if (!StorePath::TryFromBaseName(base)) {
    throw UsageError("nix-lazy-store: " + Quoted(text) + " is not a store path (want " +
                     std::string(store_dir) + "/<32-char hash>-<name> or <hash>-<name>)");
  }
  return std::string(base);
}

Command ParseCommandLine(const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError("nix-lazy-store: missing COMMAND (see --help)");
  const std::string& cmd = args[0];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") return HelpCommand{MainHelp()};
  if (cmd == "--version") return VersionCommand{};
  if (cmd == "mount") return ParseMount(args);
  if (cmd == "prefetch") return ParsePrefetch(args);
  if (cmd == "status") return ParseStatus(args);
  if (cmd == "gc") return ParseGc(args);
  if (cmd == "fsck") return ParseFsck(args);
  throw UsageError("nix-lazy-store: unknown command " + Quoted(cmd) +
                   " (commands: mount, prefetch, status, gc, fsck; see --help)");
}

}  // namespace nls
