#include "fetch/nix_conf.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fetch/error.h"
#include "fetch/signature.h"

namespace nls {
namespace {

constexpr int kMaxIncludeDepth = 32;

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
    size_t start = i;
    while (i < s.size() && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
    if (i > start) out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool ReadFile(const std::string& path, std::string* out, int* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = errno;
    return false;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    *err = EISDIR;
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

void ParseInto(std::string_view text, const std::string& origin_file, int depth, NixConf& conf) {
  if (depth > kMaxIncludeDepth) {
    throw ConfigError(origin_file + ": includes nested too deeply (include loop?)");
  }
  const std::string name = origin_file.empty() ? std::string("(config)") : origin_file;
  size_t pos = 0;
  int line_no = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    std::vector<std::string> words = Words(line);
    if (words.empty()) continue;
    std::string where = name + ":" + std::to_string(line_no);
    if (words.size() < 2) {
      throw ConfigError(where + ": illegal configuration line '" + std::string(line) + "'");
    }
    if (words[0] == "include" || words[0] == "!include") {
      if (words.size() != 2) {
        throw ConfigError(where + ": illegal configuration line '" + std::string(line) + "'");
      }
      std::string file = words[1];
      if (file[0] != '/') {
        std::string base = origin_file.empty() ? std::string(".") : DirOf(origin_file);
        file = base + "/" + file;
      }
      std::string contents;
      int err = 0;
      if (ReadFile(file, &contents, &err)) {
        ParseInto(contents, file, depth + 1, conf);
      } else if (words[0] == "include" || err != ENOENT) {
        throw ConfigError(where + ": cannot read included file '" + file +
                          "': " + std::strerror(err));
      }
      continue;
    }
    if (words[1] != "=") {
      throw ConfigError(where + ": illegal configuration line '" + std::string(line) +
                        "' (expected 'name = value')");
    }
    std::string value;
    for (size_t i = 2; i < words.size(); ++i) {
      if (i > 2) value += ' ';
      value += words[i];
    }
    conf.settings.push_back({words[0], value, where});
  }
}

double ParseSeconds(const NixConfSetting& s, bool allow_zero) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.value.c_str(), &end);
  if (s.value.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < 0 ||
      (!allow_zero && v == 0)) {
    throw ConfigError(s.origin + ": setting '" + s.name + "' has invalid value '" + s.value +
                      "' (expected a " + (allow_zero ? "non-negative" : "positive") +
                      " number of seconds)");
  }
  return v;
}

long ParseInt(const NixConfSetting& s, long min) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s.value.c_str(), &end, 10);
  if (s.value.empty() || *end != '\0' || errno != 0 || v < min || v > 1000000) {
    throw ConfigError(s.origin + ": setting '" + s.name + "' has invalid value '" + s.value +
                      "' (expected an integer >= " + std::to_string(min) + ")");
  }
  return v;
}

bool ParseBool(const NixConfSetting& s) {
  if (s.value == "true") return true;
  if (s.value == "false") return false;
  throw ConfigError(s.origin + ": setting '" + s.name + "' has invalid value '" + s.value +
                    "' (expected true or false)");
}

std::vector<PublicKey> ParseKeys(const NixConfSetting& s) {
  std::vector<PublicKey> keys;
  for (const std::string& w : Words(s.value)) {
    try {
      keys.push_back(PublicKey::Parse(w));
    } catch (const FormatError& e) {
      throw ConfigError(s.origin + ": setting '" + s.name + "': invalid public key '" + w +
                        "': " + e.what());
    }
  }
  return keys;
}

}  // namespace

NixConf ParseNixConf(std::string_view text, const std::string& origin_file) {
  NixConf conf;
  ParseInto(text, origin_file, 0, conf);
  return conf;
}

NixConf ReadNixConf(const std::string& path) {
  std::string contents;
  int err = 0;
  if (!ReadFile(path, &contents, &err)) {
    throw ConfigError("cannot read nix.conf '" + path + "': " + std::strerror(err));
  }
  return ParseNixConf(contents, path);
}

NixConf ReadSystemNixConf() {
  NixConf conf;
  const char* dir = std::getenv("NIX_CONF_DIR");
  std::string path = std::string(dir != nullptr && *dir != '\0' ? dir : "/etc/nix") + "/nix.conf";
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) conf = ReadNixConf(path);
  if (const char* env = std::getenv("NIX_CONFIG"); env != nullptr && *env != '\0') {
    NixConf extra = ParseNixConf(env, "");
    for (auto& s : extra.settings) {
      s.origin = "NIX_CONFIG" + s.origin.substr(s.origin.find(':'));
      conf.settings.push_back(std::move(s));
    }
  }
  return conf;
}

void ApplyNixConf(const NixConf& conf, FetchOptions& o) {
  for (const NixConfSetting& s : conf.settings) {
    bool extra = s.name.starts_with("extra-");
    std::string_view name = extra ? std::string_view(s.name).substr(6) : std::string_view(s.name);
    if (name == "substituters") {
      if (!extra) o.substituters.clear();
      for (std::string& w : Words(s.value)) o.substituters.push_back(std::move(w));
    } else if (name == "trusted-public-keys") {
      std::vector<PublicKey> keys = ParseKeys(s);
      if (!extra) o.trusted_keys = TrustedKeys();
      for (PublicKey& k : keys) o.trusted_keys.Add(std::move(k));
    } else if (extra) {
      continue;  // extra- of a non-list setting we do not use (or Nix's own lists)
    } else if (name == "require-sigs") {
      o.require_sigs = ParseBool(s);
    } else if (name == "netrc-file") {
      o.netrc_file = s.value;
    } else if (name == "ssl-cert-file") {
      o.ssl_cert_file = s.value;
    } else if (name == "connect-timeout") {
      // Nix: 0 means libcurl's default (300 s).
      double v = ParseSeconds(s, true);
      o.connect_timeout_s = v == 0 ? 300 : v;
    } else if (name == "stalled-download-timeout") {
      o.stalled_timeout_s = ParseSeconds(s, false);
    } else if (name == "download-attempts") {
      o.download_attempts = static_cast<int>(ParseInt(s, 1));
    } else if (name == "narinfo-cache-negative-ttl") {
      o.negative_ttl_s = ParseSeconds(s, true);
    } else if (name == "http-connections") {
      long v = ParseInt(s, 0);
      if (v > 0) o.max_parallel_downloads = static_cast<int>(v);
    }
  }
}

}  // namespace nls
