// Store path names: "<32 Nix32 chars>-<name>" under a store directory (normally /nix/store).
// Parsing is pure: it never touches the file system or the network.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nls {

inline constexpr std::string_view kDefaultStoreDir = "/nix/store";

class StorePath {
 public:
  static constexpr size_t kHashLength = 32;
  static constexpr size_t kMaxNameLength = 211;

  // Parses a base name such as "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin".
  // Throws FormatError with the reason when it is not a valid store path base name.
  static StorePath FromBaseName(std::string_view base_name);

  // Like FromBaseName, but returns nullopt instead of throwing (the FUSE lookup hot path).
  static std::optional<StorePath> TryFromBaseName(std::string_view base_name);

  // Parses "<store_dir>/<base name>" (no trailing components). Throws FormatError.
  static StorePath FromFullPath(std::string_view full_path,
                                std::string_view store_dir = kDefaultStoreDir);

  // Checks only the 32-char hash part (e.g. of "<hash>.narinfo").
  static bool IsValidHashPart(std::string_view hash_part);

  std::string_view hash_part() const { return std::string_view(base_name_).substr(0, kHashLength); }
  std::string_view name() const { return std::string_view(base_name_).substr(kHashLength + 1); }
  const std::string& base_name() const { return base_name_; }
  std::string FullPath(std::string_view store_dir = kDefaultStoreDir) const {
    return std::string(store_dir) + "/" + base_name_;
  }

  auto operator<=>(const StorePath&) const = default;

 private:
  explicit StorePath(std::string base_name) : base_name_(std::move(base_name)) {}
  std::string base_name_;
};

}  // namespace nls
