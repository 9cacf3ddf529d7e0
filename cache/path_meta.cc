#include "cache/path_meta.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <new>

#include "fetch/error.h"

namespace nls {

namespace {

constexpr char kMagic[8] = {'N', 'L', 'S', 'M', 'E', 'T', 'A', '1'};
// Version 2 added the chunk records' offset (small files packed into shared chunks); version 1
// files (20-byte chunk records, offset 0) still load.
constexpr uint32_t kVersion = 2;
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 8;
constexpr size_t kNodeSize = 40;
constexpr size_t kChunkSize = 24;
constexpr size_t kChunkSizeV1 = 20;

void Put32(std::string& out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = char(v >> (8 * i));
  out.append(b, 4);
}
void Put64(std::string& out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = char(v >> (8 * i));
  out.append(b, 8);
}
uint32_t Get32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}
uint64_t Get64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

[[noreturn]] void Bad(const std::string& why) { throw FormatError("path metadata: " + why); }

}  // namespace

std::string ChunkId::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (size_t i = 0; i < 16; ++i) {
    s[2 * i] = kDigits[bytes[i] >> 4];
    s[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return s;
}

std::optional<ChunkId> ChunkId::FromHex(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  ChunkId id;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 16; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = uint8_t(hi << 4 | lo);
  }
  return id;
}

ChunkId ChunkId::Of(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  ChunkId id;
  std::memcpy(id.bytes.data(), c.digest, 16);
  return id;
}

struct ChunkIdHasher::State {
  XXH3_state_t* xxh = XXH3_createState();
  ~State() { XXH3_freeState(xxh); }
};

ChunkIdHasher::ChunkIdHasher() : state_(std::make_unique<State>()) {
  if (!state_->xxh) throw std::bad_alloc();
  Reset();
}
ChunkIdHasher::~ChunkIdHasher() = default;

void ChunkIdHasher::Reset() { XXH3_128bits_reset(state_->xxh); }

void ChunkIdHasher::Update(std::string_view data) {
  XXH3_128bits_update(state_->xxh, data.data(), data.size());
}

ChunkId ChunkIdHasher::Finish() const {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(state_->xxh));
  ChunkId id;
  std::memcpy(id.bytes.data(), c.digest, 16);
  return id;
}

uint32_t PathMeta::node_count() const { return uint32_t(nodes_.size()); }
const PathMeta::Node& PathMeta::node(uint32_t index) const { return nodes_[index]; }

std::string_view PathMeta::name(uint32_t index) const {
  const Node& n = nodes_[index];
  return std::string_view(strings_).substr(n.name_offset, n.name_length);
}

std::string_view PathMeta::symlink_target(uint32_t index) const {
  const Node& n = nodes_[index];
  if (n.type != Type::kSymlink) return {};
  return std::string_view(strings_).substr(n.first, n.size);
}

std::span<const ChunkRef> PathMeta::chunks(uint32_t index) const {
  const Node& n = nodes_[index];
  if (n.type != Type::kRegular) return {};
  return std::span<const ChunkRef>(chunks_).subspan(n.first, n.count);
}

std::span<const uint64_t> PathMeta::chunk_offsets(uint32_t index) const {
  const Node& n = nodes_[index];
  if (n.type != Type::kRegular) return {};
  return std::span<const uint64_t>(chunk_offsets_).subspan(n.first, n.count);
}

size_t PathMeta::ChunkAt(uint32_t index, uint64_t offset) const {
  auto offs = chunk_offsets(index);
  auto it = std::upper_bound(offs.begin(), offs.end(), offset);
  return it == offs.begin() ? 0 : size_t(it - offs.begin()) - 1;
}

std::optional<uint32_t> PathMeta::Lookup(uint32_t dir, std::string_view name) const {
  const Node& d = nodes_[dir];
  if (d.type != Type::kDirectory) return std::nullopt;
  uint64_t lo = d.first, hi = d.first + d.count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    int c = this->name(uint32_t(mid)).compare(name);  // char_traits<char>::compare: unsigned
    if (c == 0) return uint32_t(mid);
    if (c < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return std::nullopt;
}

uint64_t PathMeta::content_bytes() const { return content_bytes_; }

void PathMeta::ComputeOffsets() {
  chunk_offsets_.assign(chunks_.size(), 0);
  content_bytes_ = 0;
  for (const Node& n : nodes_) {
    if (n.type != Type::kRegular) continue;
    uint64_t off = 0;
    for (uint64_t i = n.first; i < n.first + n.count; ++i) {
      chunk_offsets_[i] = off;
      off += chunks_[i].size;
    }
    content_bytes_ += n.size;
  }
}

std::string PathMeta::Serialize() const {
  std::string out;
  out.reserve(kHeaderSize + nodes_.size() * kNodeSize + chunks_.size() * kChunkSize +
              strings_.size() + 8);
  out.append(kMagic, 8);
  Put32(out, kVersion);
  Put32(out, uint32_t(nodes_.size()));
  Put64(out, chunks_.size());
  Put64(out, strings_.size());
  for (const Node& n : nodes_) {
    out.push_back(char(n.type));
    out.push_back(char(n.executable ? 1 : 0));
    out.append(2, '\0');
    Put32(out, n.parent);
    Put32(out, n.name_offset);
    Put32(out, n.name_length);
    Put64(out, n.size);
    Put64(out, n.first);
    Put64(out, n.count);
  }
  for (const ChunkRef& c : chunks_) {
    out.append(reinterpret_cast<const char*>(c.id.bytes.data()), 16);
    Put32(out, c.size);
    Put32(out, c.offset);
  }
  out.append(strings_);
  Put64(out, XXH3_64bits(out.data(), out.size()));
  return out;
}

std::shared_ptr<const PathMeta> PathMeta::Load(std::string_view bytes) {
  if (bytes.size() < kHeaderSize + 8) Bad("truncated (" + std::to_string(bytes.size()) + " bytes)");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) Bad("bad magic");
  uint32_t version = Get32(bytes.data() + 8);
  if (version != kVersion && version != 1) Bad("unsupported version " + std::to_string(version));
  const size_t chunk_record = version == 1 ? kChunkSizeV1 : kChunkSize;
  uint64_t stored = Get64(bytes.data() + bytes.size() - 8);
  if (XXH3_64bits(bytes.data(), bytes.size() - 8) != stored) Bad("checksum mismatch");
  uint64_t node_count = Get32(bytes.data() + 12);
  uint64_t chunk_count = Get64(bytes.data() + 16);
  uint64_t strings_size = Get64(bytes.data() + 24);
  uint64_t body = bytes.size() - kHeaderSize - 8;
  if (node_count == 0 || node_count > body / kNodeSize || chunk_count > body / chunk_record ||
      strings_size > body ||
      node_count * kNodeSize + chunk_count * chunk_record + strings_size != body) {
    Bad("inconsistent sizes");
  }
  auto meta = std::make_shared<PathMeta>();
  meta->nodes_.resize(node_count);
  meta->chunks_.resize(chunk_count);
  const char* p = bytes.data() + kHeaderSize;
  for (Node& n : meta->nodes_) {
    uint8_t type = uint8_t(p[0]);
    if (type < 1 || type > 3) Bad("bad node type");
    n.type = Type(type);
    n.executable = p[1] != 0;
    n.parent = Get32(p + 4);
    n.name_offset = Get32(p + 8);
    n.name_length = Get32(p + 12);
    n.size = Get64(p + 16);
    n.first = Get64(p + 24);
    n.count = Get64(p + 32);
    p += kNodeSize;
  }
  for (ChunkRef& c : meta->chunks_) {
    std::memcpy(c.id.bytes.data(), p, 16);
    c.size = Get32(p + 16);
    c.offset = chunk_record == kChunkSize ? Get32(p + 20) : 0;
    if (uint64_t(c.offset) + c.size > UINT32_MAX) Bad("chunk range out of range");
    p += chunk_record;
  }
  meta->strings_.assign(p, strings_size);

  // Structural checks: every index in range, children consecutive/sorted/pointing back, chunk
  // sizes adding up to file sizes, chunk ranges of files disjoint and in node order.
  const auto& nodes = meta->nodes_;
  uint64_t next_chunk = 0;
  for (uint64_t i = 0; i < node_count; ++i) {
    const Node& n = nodes[i];
    if (uint64_t(n.name_offset) + n.name_length > strings_size) Bad("name out of range");
    if (n.parent >= node_count) Bad("parent out of range");
    if (i == 0 && (n.parent != 0 || n.name_length != 0)) Bad("bad root");
    if (i != 0 && (n.name_length == 0 || nodes[n.parent].type != Type::kDirectory))
      Bad("bad parent of node " + std::to_string(i));
    switch (n.type) {
      case Type::kDirectory: {
        if (n.count != n.size) Bad("directory child count mismatch");
        if (n.count && (n.first <= i || n.first > node_count || n.count > node_count - n.first))
          Bad("children out of range");
        for (uint64_t c = n.first; c < n.first + n.count; ++c) {
          if (nodes[c].parent != i) Bad("child does not point to its parent");
          if (c > n.first && !(meta->name(uint32_t(c - 1)) < meta->name(uint32_t(c))))
            Bad("children not sorted");
        }
        break;
      }
      case Type::kRegular: {
        if (n.first != next_chunk || n.count > chunk_count - n.first) Bad("chunks out of range");
        uint64_t sum = 0;
        for (uint64_t c = n.first; c < n.first + n.count; ++c) {
          if (meta->chunks_[c].size == 0) Bad("empty chunk");
          sum += meta->chunks_[c].size;
        }
        if (sum != n.size) Bad("chunk sizes do not add up to file size");
        next_chunk += n.count;
        break;
      }
      case Type::kSymlink:
        if (n.first > strings_size || n.size > strings_size - n.first || n.size == 0)
          Bad("symlink target out of range");
        break;
    }
  }
  if (next_chunk != chunk_count) Bad("unreferenced chunk records");
  // Every non-root node must be the child of its parent (so the tree has no cycles): the parent's
  // range contains it, which the loop above checked from the parent side; count them.
  uint64_t children = 0;
  for (const Node& n : nodes)
    if (n.type == Type::kDirectory) children += n.count;
  if (children != node_count - 1) Bad("tree does not cover every node exactly once");
  for (uint64_t i = 1; i < node_count; ++i) {
    const Node& parent = nodes[nodes[i].parent];
    if (i < parent.first || i >= parent.first + parent.count) Bad("node outside its parent");
  }
  meta->ComputeOffsets();
  return meta;
}

uint32_t PathMetaBuilder::Add(std::string_view path, Entry entry) {
  uint32_t index = uint32_t(entries_.size());
  if (path.empty()) {
    if (!entries_.empty()) throw FormatError("path metadata: root added twice");
  } else {
    if (entries_.empty()) throw FormatError("path metadata: entry before the root");
    size_t slash = path.rfind('/');
    std::string parent(slash == std::string_view::npos ? std::string_view()
                                                       : path.substr(0, slash));
    entry.name = std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
    auto it = dirs_.find(parent);
    if (it == dirs_.end())
      throw FormatError("path metadata: parent of '" + std::string(path) + "' is not a directory");
    entries_[it->second].children.push_back(index);
  }
  if (entry.type == PathMeta::Type::kDirectory) {
    if (!dirs_.emplace(std::string(path), index).second)
      throw FormatError("path metadata: '" + std::string(path) + "' added twice");
  }
  entries_.push_back(std::move(entry));
  return index;
}

void PathMetaBuilder::AddDirectory(std::string_view path) {
  Entry e;
  e.type = PathMeta::Type::kDirectory;
  Add(path, std::move(e));
}

void PathMetaBuilder::AddRegular(std::string_view path, bool executable, uint64_t size,
                                 std::vector<ChunkRef> chunks) {
  uint64_t sum = 0;
  for (const auto& c : chunks) sum += c.size;
  if (sum != size)
    throw FormatError("path metadata: chunks of '" + std::string(path) + "' do not add up");
  Entry e;
  e.type = PathMeta::Type::kRegular;
  e.executable = executable;
  e.size = size;
  e.chunks = std::move(chunks);
  Add(path, std::move(e));
}

void PathMetaBuilder::AddSymlink(std::string_view path, std::string_view target) {
  Entry e;
  e.type = PathMeta::Type::kSymlink;
  e.target = std::string(target);
  Add(path, std::move(e));
}

std::shared_ptr<const PathMeta> PathMetaBuilder::Build() {
  if (entries_.empty()) throw FormatError("path metadata: no root");
  auto meta = std::make_shared<PathMeta>();
  auto& nodes = meta->nodes_;
  nodes.reserve(entries_.size());
  std::vector<uint32_t> order;  // node index -> entry index
  order.reserve(entries_.size());
  order.push_back(0);
  nodes.push_back(PathMeta::Node{});
  // Breadth-first: node i's children get the next free consecutive indices.
  for (size_t i = 0; i < order.size(); ++i) {
    Entry& e = entries_[order[i]];
    std::sort(e.children.begin(), e.children.end(),
              [&](uint32_t a, uint32_t b) { return entries_[a].name < entries_[b].name; });
    for (size_t k = 1; k < e.children.size(); ++k) {
      if (entries_[e.children[k - 1]].name == entries_[e.children[k]].name)
        throw FormatError("path metadata: duplicate name '" + entries_[e.children[k]].name + "'");
    }
    PathMeta::Node& n = nodes[i];
    n.type = e.type;
    n.executable = e.executable;
    n.name_offset = uint32_t(meta->strings_.size());
    n.name_length = uint32_t(e.name.size());
    meta->strings_ += e.name;
    switch (e.type) {
      case PathMeta::Type::kDirectory:
        n.first = order.size();
        n.count = n.size = e.children.size();
        for (uint32_t c : e.children) {
          order.push_back(c);
          PathMeta::Node child;
          child.parent = uint32_t(i);
          nodes.push_back(child);
        }
        break;
      case PathMeta::Type::kRegular:
        n.size = e.size;
        n.first = meta->chunks_.size();
        n.count = e.chunks.size();
        meta->chunks_.insert(meta->chunks_.end(), e.chunks.begin(), e.chunks.end());
        break;
      case PathMeta::Type::kSymlink:
        n.first = meta->strings_.size();
        n.size = e.target.size();
        meta->strings_ += e.target;
        break;
    }
  }
  entries_.clear();
  dirs_.clear();
  meta->ComputeOffsets();
  return meta;
}

}  // namespace nls
