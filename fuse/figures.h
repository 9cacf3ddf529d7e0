// The figures a mount exposes: as extended attributes of the mount root
// ("user.nix-lazy-store.<name>", decimal text) and in Prometheus text format
// ("nix_lazy_store_<name>").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nls {

inline constexpr std::string_view kXattrPrefix = "user.nix-lazy-store.";

struct Figure {
  std::string name;  // [a-z_]+
  uint64_t value = 0;
  std::string help;
  bool counter = false;  // monotonic (Prometheus counter) or a gauge
};

// "user.nix-lazy-store.a\0user.nix-lazy-store.b\0..." as listxattr returns it.
std::string XattrNameList(const std::vector<Figure>& figures);

// The value of xattr `xattr_name`, or nullopt when it is not one of ours.
std::optional<std::string> XattrValue(const std::vector<Figure>& figures,
                                      std::string_view xattr_name);

// Prometheus text exposition format 0.0.4.
std::string PrometheusText(const std::vector<Figure>& figures);

}  // namespace nls
