#include "fetch/narinfo.h"

#include <algorithm>
#include <charconv>

#include "fetch/error.h"

namespace nls {

namespace {

// Strict unsigned decimal: digits only (no sign, no spaces), no overflow.
std::optional<uint64_t> ParseU64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

class LineError {
 public:
  LineError(std::string_view origin, size_t line) : origin_(origin), line_(line) {}
  [[noreturn]] void operator()(const std::string& reason) const {
    throw FormatError("invalid narinfo " + std::string(origin_) + " line " + std::to_string(line_) +
                      ": " + reason);
  }

 private:
  std::string_view origin_;
  size_t line_;
};

}  // namespace

NarInfo NarInfo::Parse(std::string_view text, std::string_view origin,
                       std::optional<std::string_view> expected_hash_part,
                       std::string_view store_dir) {
  NarInfo info;
  bool have_store_path = false;
  bool have_nar_hash = false;
  bool have_nar_size = false;
  bool have_references = false;
  bool have_compression = false;
  bool have_deriver = false;

  size_t pos = 0;
  size_t line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    const LineError fail(origin, line_no);
    const size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) fail("line does not end with a newline");
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;

    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) fail("no ':' in line " + Quoted(line));
    if (colon == 0) fail("empty key in line " + Quoted(line));
    const std::string_view key = line.substr(0, colon);
    std::string_view value;
    if (colon + 1 < line.size()) {
      // Nix writes "Key: value" and reads the value from two characters after the colon.
      if (line[colon + 1] != ' ') fail("no space after ':' in line " + Quoted(line));
      value = line.substr(colon + 2);
    }  // else "Key:" at the end of the line: an empty value (tolerated; Nix writes "Key: ").

    // Runs a parser of a sub-format (store path, hash) and names the line when it fails.
    auto sub = [&](auto&& parse) {
      try {
        return parse();
      } catch (const FormatError& e) {
        fail("bad " + std::string(key) + ": " + e.what());
      }
    };

    if (key == "StorePath") {
      if (have_store_path) fail("duplicate StorePath");
      info.store_path = sub([&] { return StorePath::FromFullPath(value, store_dir); });
      have_store_path = true;
    } else if (key == "URL") {
      if (!info.url.empty()) fail("duplicate URL");
      if (value.empty()) fail("empty URL");
      info.url = std::string(value);
    } else if (key == "Compression") {
      if (have_compression) fail("duplicate Compression");
      info.compression = std::string(value);
      have_compression = true;
    } else if (key == "FileHash") {
      if (info.file_hash) fail("duplicate FileHash");
      info.file_hash = sub([&] { return Hash::Parse(value); });
    } else if (key == "FileSize") {
      if (info.file_size) fail("duplicate FileSize");
      info.file_size = ParseU64(value);
      if (!info.file_size) fail("invalid FileSize " + Quoted(value));
    } else if (key == "NarHash") {
      if (have_nar_hash) fail("duplicate NarHash");
      info.nar_hash = sub([&] { return Hash::Parse(value); });
      have_nar_hash = true;
    } else if (key == "NarSize") {
      if (have_nar_size) fail("duplicate NarSize");
      auto n = ParseU64(value);
      if (!n) fail("invalid NarSize " + Quoted(value));
      if (*n == 0) fail("NarSize is 0");
      info.nar_size = *n;
      have_nar_size = true;
    } else if (key == "References") {
      if (have_references) fail("duplicate References");
      have_references = true;
      size_t start = 0;
      while (start <= value.size()) {
        size_t end = value.find(' ', start);
        if (end == std::string_view::npos) end = value.size();
        // Like Nix, empty tokens (repeated or trailing spaces) are skipped.
        if (end > start) {
          const std::string_view ref = value.substr(start, end - start);
          info.references.push_back(sub([&] { return StorePath::FromBaseName(ref); }));
        }
        start = end + 1;
      }
    } else if (key == "Deriver") {
      if (have_deriver) fail("duplicate Deriver");
      have_deriver = true;
      if (value != "unknown-deriver") {
        info.deriver = sub([&] { return StorePath::FromBaseName(value); });
      }
    } else if (key == "Sig") {
      if (value.empty()) fail("empty Sig");
      info.sigs.emplace_back(value);
    } else if (key == "CA") {
      if (info.ca) fail("CA appears more than once");
      if (!value.starts_with("text:") && !value.starts_with("fixed:")) {
        fail("invalid CA " + Quoted(value) + " (expected 'text:...' or 'fixed:...')");
      }
      info.ca = std::string(value);
    }
    // Unknown keys are ignored, as Nix does.
  }

  const std::string end_of =
      "invalid narinfo " + std::string(origin) + " (" + std::to_string(line_no) + " lines): ";
  if (!have_store_path) throw FormatError(end_of + "missing StorePath");
  const std::string for_path = "for " + info.store_path.FullPath(store_dir) + " ";
  if (!have_nar_hash) throw FormatError(end_of + for_path + "missing NarHash");
  if (info.url.empty()) throw FormatError(end_of + for_path + "missing URL");
  if (!have_nar_size) throw FormatError(end_of + for_path + "missing NarSize");
  if (info.compression.empty()) info.compression = "bzip2";
  if (expected_hash_part && info.store_path.hash_part() != *expected_hash_part) {
    throw FormatError(end_of + "StorePath " + info.store_path.FullPath(store_dir) +
                      " does not have the requested hash part " + Quoted(*expected_hash_part));
  }
  return info;
}

std::string NarInfo::ToString(std::string_view store_dir) const {
  auto check = [&](std::string_view field, std::string_view value, bool may_be_empty) {
    if ((!may_be_empty && value.empty()) || value.find('\n') != std::string_view::npos) {
      throw FormatError("cannot write narinfo for " + store_path.FullPath(store_dir) + ": " +
                        std::string(field) + " " + Quoted(value) +
                        (value.empty() ? " is empty" : " contains a newline"));
    }
  };
  check("URL", url, false);
  check("Compression", compression, true);
  if (nar_size == 0) {
    throw FormatError("cannot write narinfo for " + store_path.FullPath(store_dir) +
                      ": NarSize is 0");
  }
  std::string out;
  out += "StorePath: " + store_path.FullPath(store_dir) + "\n";
  out += "URL: " + url + "\n";
  out += "Compression: " + (compression.empty() ? std::string("bzip2") : compression) + "\n";
  if (file_hash) out += "FileHash: " + file_hash->ToNixString() + "\n";
  if (file_size) out += "FileSize: " + std::to_string(*file_size) + "\n";
  out += "NarHash: " + nar_hash.ToNixString() + "\n";
  out += "NarSize: " + std::to_string(nar_size) + "\n";
  out += "References:";
  for (const StorePath& ref : references) out += " " + ref.base_name();
  // Nix writes "References: " (with the space) even when there are none.
  if (references.empty()) out += " ";
  out += "\n";
  if (deriver) out += "Deriver: " + deriver->base_name() + "\n";
  for (const std::string& sig : sigs) {
    check("Sig", sig, false);
    out += "Sig: " + sig + "\n";
  }
  if (ca) {
    check("CA", *ca, false);
    out += "CA: " + *ca + "\n";
  }
  return out;
}

std::string NarInfo::Fingerprint(std::string_view store_dir) const {
  std::vector<std::string> refs;
  refs.reserve(references.size());
  for (const StorePath& ref : references) refs.push_back(ref.FullPath(store_dir));
  std::sort(refs.begin(), refs.end());
  // Nix keeps references in a set: a repeated reference counts once.
  refs.erase(std::unique(refs.begin(), refs.end()), refs.end());
  std::string out = "1;" + store_path.FullPath(store_dir) + ";" + nar_hash.ToNixString() + ";" +
                    std::to_string(nar_size) + ";";
  for (size_t i = 0; i < refs.size(); ++i) {
    if (i > 0) out += ",";
    out += refs[i];
  }
  return out;
}

}  // namespace nls
