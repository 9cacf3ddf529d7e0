#include "fuse/figures.h"

namespace nls {

std::string XattrNameList(const std::vector<Figure>& figures) {
  std::string out;
  for (const Figure& f : figures) {
    out += kXattrPrefix;
    out += f.name;
    out.push_back('\0');
  }
  return out;
}

std::optional<std::string> XattrValue(const std::vector<Figure>& figures,
                                      std::string_view xattr_name) {
  if (xattr_name.substr(0, kXattrPrefix.size()) != kXattrPrefix) return std::nullopt;
  std::string_view name = xattr_name.substr(kXattrPrefix.size());
  for (const Figure& f : figures) {
    if (f.name == name) return std::to_string(f.value);
  }
  return std::nullopt;
}

std::string PrometheusText(const std::vector<Figure>& figures) {
  std::string out;
  for (const Figure& f : figures) {
    const std::string metric =
        "nix_lazy_store_" + f.name + (f.counter ? std::string("_total") : std::string());
    out += "# HELP " + metric + " " + f.help + "\n";
    out += "# TYPE " + metric + (f.counter ? " counter\n" : " gauge\n");
    out += metric + " " + std::to_string(f.value) + "\n";
  }
  return out;
}

}  // namespace nls
