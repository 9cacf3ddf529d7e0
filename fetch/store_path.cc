#include "fetch/store_path.h"

#include "fetch/error.h"

namespace nls {

namespace {

// Nix32 alphabet: digits and lowercase letters except e, o, u, t.
constexpr bool IsNix32Char(char c) {
  return (c >= '0' && c <= '9') ||
         (c >= 'a' && c <= 'z' && c != 'e' && c != 'o' && c != 'u' && c != 't');
}

constexpr bool IsNameChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
         c == '-' || c == '.' || c == '_' || c == '?' || c == '=';
}

// Returns nullptr if `base_name` is a valid store path base name, else a static reason.
// Allocates nothing and never throws: it is on the FUSE lookup hot path.
const char* CheckBaseName(std::string_view base_name) {
  if (base_name.size() < StorePath::kHashLength + 2) return "too short";
  if (!StorePath::IsValidHashPart(base_name.substr(0, StorePath::kHashLength))) {
    return "hash part is not 32 Nix32 characters";
  }
  if (base_name[StorePath::kHashLength] != '-') return "no '-' after the hash part";
  const std::string_view name = base_name.substr(StorePath::kHashLength + 1);
  if (name.size() > StorePath::kMaxNameLength) return "name is longer than 211 characters";
  for (char c : name) {
    if (!IsNameChar(c)) return "name contains a character outside [0-9a-zA-Z+-._?=]";
  }
  if (name == "." || name == "..") return "name is '.' or '..'";
  if (name.starts_with(".-") || name.starts_with("..-")) {
    return "name starts with '.-' or '..-'";
  }
  return nullptr;
}

}  // namespace

bool StorePath::IsValidHashPart(std::string_view hash_part) {
  if (hash_part.size() != kHashLength) return false;
  for (char c : hash_part) {
    if (!IsNix32Char(c)) return false;
  }
  return true;
}

std::optional<StorePath> StorePath::TryFromBaseName(std::string_view base_name) {
  if (CheckBaseName(base_name) != nullptr) return std::nullopt;
  return StorePath(std::string(base_name));
}

StorePath StorePath::FromBaseName(std::string_view base_name) {
  if (const char* reason = CheckBaseName(base_name)) {
    throw FormatError("invalid store path base name " + Quoted(base_name, 300) + ": " + reason);
  }
  return StorePath(std::string(base_name));
}

StorePath StorePath::FromFullPath(std::string_view full_path, std::string_view store_dir) {
  if (full_path.size() <= store_dir.size() || !full_path.starts_with(store_dir) ||
      full_path[store_dir.size()] != '/') {
    throw FormatError("store path " + Quoted(full_path, 300) + " is not in the store directory '" +
                      std::string(store_dir) + "'");
  }
  const std::string_view base = full_path.substr(store_dir.size() + 1);
  if (const char* reason = CheckBaseName(base)) {
    throw FormatError("invalid store path " + Quoted(full_path, 300) + ": " + reason);
  }
  return StorePath(std::string(base));
}

}  // namespace nls
