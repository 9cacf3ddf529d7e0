// narinfo_check: parses and verifies narinfo files with nls_fetch, for cross-checks against real
// Nix (tests/integration/test_nix_narinfo_crosscheck.py).
//
// Usage: narinfo_check [--key NAME:BASE64]... [--secret-key-file FILE] [--store-dir DIR] FILE...
//
// A file named nix-cache-info is parsed as such (store_dir, priority, want_mass_query).
// Prints one JSON object per file on stdout: the parsed fields, "verified" (a Sig verifies with
// one of the --key keys), "rewrite_identical" (ToString() reproduces the file byte for byte),
// "fingerprint", and with --secret-key-file "our_sig" (our own signature of the fingerprint).
// A file named <hashpart>.narinfo must describe that hash part. Exit status: 0 if every file
// parsed and (when keys were given) verified, 1 otherwise, 2 on usage errors.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fetch/cache_info.h"
#include "fetch/error.h"
#include "fetch/narinfo.h"
#include "fetch/signature.h"

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw nls::Error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

int Usage() {
  std::cerr << "usage: narinfo_check [--key NAME:BASE64]... [--secret-key-file FILE] "
               "[--store-dir DIR] FILE...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  nls::TrustedKeys keys;
  std::optional<nls::SecretKey> secret;
  std::string store_dir(nls::kDefaultStoreDir);
  std::vector<std::string> files;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if ((arg == "--key" || arg == "--secret-key-file" || arg == "--store-dir") && i + 1 >= argc) {
        return Usage();
      }
      if (arg == "--key") {
        keys.Add(nls::PublicKey::Parse(argv[++i]));
      } else if (arg == "--secret-key-file") {
        secret = nls::SecretKey::Parse(Trim(ReadFile(argv[++i])));
      } else if (arg == "--store-dir") {
        store_dir = argv[++i];
      } else if (arg.starts_with("--")) {
        return Usage();
      } else {
        files.push_back(arg);
      }
    }
  } catch (const nls::Error& e) {
    std::cerr << "narinfo_check: " << e.what() << "\n";
    return 2;
  }
  if (files.empty()) return Usage();

  bool all_ok = true;
  for (const std::string& file : files) {
    nlohmann::json out;
    out["file"] = file;
    try {
      const std::string text = ReadFile(file);
      if (file.ends_with("nix-cache-info")) {
        const nls::CacheInfo ci = nls::CacheInfo::Parse(text, file);
        out["store_dir"] = ci.store_dir;
        out["priority"] = ci.priority;
        out["want_mass_query"] = ci.want_mass_query;
        out["ok"] = true;
        std::cout << out.dump() << "\n";
        continue;
      }
      std::optional<std::string> hash_part;
      const std::string base = file.substr(file.rfind('/') + 1);
      if (base.size() == 32 + 8 && base.ends_with(".narinfo")) hash_part = base.substr(0, 32);
      const nls::NarInfo info = nls::NarInfo::Parse(text, file, hash_part, store_dir);
      out["store_path"] = info.store_path.FullPath(store_dir);
      out["url"] = info.url;
      out["compression"] = info.compression;
      out["file_hash"] = info.file_hash ? info.file_hash->ToNixString() : "";
      out["file_hash_sri"] = info.file_hash ? info.file_hash->ToSri() : "";
      out["file_size"] = info.file_size ? nlohmann::json(*info.file_size) : nlohmann::json();
      out["nar_hash"] = info.nar_hash.ToNixString();
      out["nar_hash_base16"] = info.nar_hash.ToBase16();
      out["nar_hash_sri"] = info.nar_hash.ToSri();
      out["nar_size"] = info.nar_size;
      std::vector<std::string> refs;
      for (const auto& r : info.references) refs.push_back(r.base_name());
      out["references"] = refs;
      out["deriver"] = info.deriver ? info.deriver->base_name() : "";
      out["sigs"] = info.sigs;
      out["ca"] = info.ca ? *info.ca : "";
      out["fingerprint"] = info.Fingerprint(store_dir);
      out["rewrite_identical"] = info.ToString(store_dir) == text;
      out["roundtrip_equal"] =
          nls::NarInfo::Parse(info.ToString(store_dir), file, hash_part, store_dir) == info;
      if (secret) out["our_sig"] = secret->Sign(info.Fingerprint(store_dir));
      const bool verified = keys.Verifies(info, store_dir);
      out["verified"] = verified;
      out["ok"] = keys.empty() || verified;
    } catch (const nls::Error& e) {
      out["ok"] = false;
      out["error"] = e.what();
    }
    if (!out["ok"].get<bool>()) all_ok = false;
    std::cout << out.dump() << "\n";
  }
  return all_ok ? 0 : 1;
}
