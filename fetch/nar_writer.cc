#include "fetch/nar_writer.h"

#include <utility>

namespace nls {

NarTree NarTree::File(std::string contents, bool executable) {
  NarTree t;
  t.type = Type::kRegular;
  t.contents = std::move(contents);
  t.executable = executable;
  return t;
}

NarTree NarTree::Symlink(std::string target) {
  NarTree t;
  t.type = Type::kSymlink;
  t.target = std::move(target);
  return t;
}

NarTree NarTree::Directory(std::map<std::string, NarTree> entries) {
  NarTree t;
  t.type = Type::kDirectory;
  t.entries = std::move(entries);
  return t;
}

NarWriter& NarWriter::U64(uint64_t n) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out_.append(b, 8);
  return *this;
}

NarWriter& NarWriter::Str(std::string_view s) {
  U64(s.size());
  out_.append(s);
  out_.append((8 - s.size() % 8) % 8, '\0');
  return *this;
}

NarWriter& NarWriter::Raw(std::string_view s) {
  out_.append(s);
  return *this;
}

NarWriter& NarWriter::Node(const NarTree& node) {
  Str("(").Str("type");
  switch (node.type) {
    case NarTree::Type::kRegular:
      Str("regular");
      if (node.executable) Str("executable").Str("");
      Str("contents").Str(node.contents);
      break;
    case NarTree::Type::kSymlink:
      Str("symlink").Str("target").Str(node.target);
      break;
    case NarTree::Type::kDirectory:
      Str("directory");
      for (const auto& [name, child] : node.entries) {
        Str("entry").Str("(").Str("name").Str(name).Str("node");
        Node(child);
        Str(")");
      }
      break;
  }
  return Str(")");
}

std::string WriteNar(const NarTree& root) { return NarWriter().Magic().Node(root).Take(); }

}  // namespace nls
