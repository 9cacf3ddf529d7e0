#include "fetch/nar_listing.h"

#include <nlohmann/json.hpp>

#include "fetch/error.h"

namespace nls {
namespace {

using Json = nlohmann::json;

class ListingParser {
 public:
  explicit ListingParser(std::string_view origin) : origin_(origin) {}

  [[noreturn]] void Fail(const std::string& where, const std::string& reason) const {
    throw FormatError("invalid NAR listing " + std::string(origin_) + ": " + reason + " at " +
                      (where.empty() ? std::string("root") : where));
  }

  const Json& Field(const Json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) Fail(where, std::string("missing field \"") + key + "\"");
    return *it;
  }

  uint64_t Unsigned(const Json& v, const char* key, const std::string& where) const {
    if (!v.is_number_unsigned()) {
      Fail(where, std::string("field \"") + key + "\" is not a non-negative integer");
    }
    return v.get<uint64_t>();
  }

  ListingNode Node(const Json& j, const std::string& where, int depth) const {
    if (depth > 256) Fail(where, "listing nested too deeply");
    if (!j.is_object()) Fail(where, "node is not an object");
    const Json& type = Field(j, "type", where);
    if (!type.is_string()) Fail(where, "field \"type\" is not a string");
    const std::string& t = type.get_ref<const std::string&>();
    ListingNode n;
    if (t == "regular") {
      n.type = ListingNode::Type::kRegular;
      n.size = Unsigned(Field(j, "size", where), "size", where);
      if (auto it = j.find("executable"); it != j.end()) {
        if (!it->is_boolean()) Fail(where, "field \"executable\" is not a boolean");
        n.executable = it->get<bool>();
      }
      if (auto it = j.find("narOffset"); it != j.end()) {
        n.nar_offset = Unsigned(*it, "narOffset", where);
      }
    } else if (t == "symlink") {
      n.type = ListingNode::Type::kSymlink;
      const Json& target = Field(j, "target", where);
      if (!target.is_string()) Fail(where, "field \"target\" is not a string");
      n.target = target.get<std::string>();
      if (n.target.empty()) Fail(where, "empty symlink target");
      if (n.target.find('\0') != std::string::npos) Fail(where, "symlink target contains NUL");
      if (n.target.size() > 4095) Fail(where, "symlink target longer than 4095 bytes");
    } else if (t == "directory") {
      n.type = ListingNode::Type::kDirectory;
      const Json& entries = Field(j, "entries", where);
      if (!entries.is_object()) Fail(where, "field \"entries\" is not an object");
      for (const auto& [name, child] : entries.items()) {
        if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
            name.find('\0') != std::string::npos || name.size() > 255) {
          Fail(where, "invalid entry name \"" + name + "\"");
        }
        std::string child_where = where.empty() ? name : where + "/" + name;
        n.entries.emplace(name, Node(child, child_where, depth + 1));
      }
    } else {
      Fail(where, "unknown node type \"" + t + "\"");
    }
    return n;
  }

 private:
  std::string_view origin_;
};

nlohmann::ordered_json ToJson(const ListingNode& n) {
  // ordered_json keeps Nix's key order (type first); entries come sorted from std::map.
  nlohmann::ordered_json j;
  switch (n.type) {
    case ListingNode::Type::kRegular:
      j["type"] = "regular";
      j["size"] = n.size;
      if (n.executable) j["executable"] = true;
      if (n.nar_offset) j["narOffset"] = *n.nar_offset;
      break;
    case ListingNode::Type::kSymlink:
      j["type"] = "symlink";
      j["target"] = n.target;
      break;
    case ListingNode::Type::kDirectory: {
      j["type"] = "directory";
      nlohmann::ordered_json entries = nlohmann::ordered_json::object();
      for (const auto& [name, child] : n.entries) entries[name] = ToJson(child);
      j["entries"] = std::move(entries);
      break;
    }
  }
  return j;
}

}  // namespace

ListingNode ParseListing(std::string_view json, std::string_view origin) {
  ListingParser p(origin);
  Json doc = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) p.Fail("", "not valid JSON");
  if (!doc.is_object()) p.Fail("", "document is not an object");
  const Json& version = p.Field(doc, "version", "");
  if (!version.is_number_integer() || version.get<int64_t>() != 1) {
    p.Fail("", "unsupported version " + version.dump());
  }
  return p.Node(p.Field(doc, "root", ""), "", 0);
}

std::string ListingToJson(const ListingNode& root) {
  nlohmann::ordered_json doc;
  doc["version"] = 1;
  doc["root"] = ToJson(root);
  return doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

ListingNode* ListingBuilder::NodeFor(std::string_view path) {
  ListingNode* node = &root_;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view name = path.substr(0, slash);
    node = &node->entries[std::string(name)];
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
  }
  return node;
}

void ListingBuilder::CreateDirectory(std::string_view path) {
  ListingNode* n = NodeFor(path);
  *n = ListingNode{};
  n->type = ListingNode::Type::kDirectory;
}

void ListingBuilder::BeginRegular(std::string_view path, bool executable, uint64_t size,
                                  uint64_t contents_offset) {
  ListingNode* n = NodeFor(path);
  *n = ListingNode{};
  n->type = ListingNode::Type::kRegular;
  n->executable = executable;
  n->size = size;
  n->nar_offset = contents_offset;
}

void ListingBuilder::RegularData(std::string_view) {}

void ListingBuilder::EndRegular() {}

void ListingBuilder::CreateSymlink(std::string_view path, std::string_view target) {
  ListingNode* n = NodeFor(path);
  *n = ListingNode{};
  n->type = ListingNode::Type::kSymlink;
  n->target = std::string(target);
}

}  // namespace nls
