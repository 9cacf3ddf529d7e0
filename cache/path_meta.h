// The metadata of one cached store path: its tree (names, types, executable bits, sizes,
// symlink targets) and, for each regular file, the list of chunks that hold its contents.
//
// A PathMeta is immutable once built. Node 0 is the root of the store path (a directory, a
// regular file or a symlink). A directory's children are consecutive node indices sorted by
// name (unsigned byte order), so Lookup is a binary search. Serialize()/Load() use a versioned,
// checksummed on-disk format designed to load a 50 000-file path in a few milliseconds.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nls {

// A chunk's identity: XXH3-128 of its contents.
struct ChunkId {
  std::array<uint8_t, 16> bytes{};
  std::string ToHex() const;
  static std::optional<ChunkId> FromHex(std::string_view hex);
  static ChunkId Of(std::string_view data);
  auto operator<=>(const ChunkId&) const = default;
};

// ChunkId::Of over bytes given in pieces (streaming XXH3-128).
class ChunkIdHasher {
 public:
  ChunkIdHasher();
  ~ChunkIdHasher();
  ChunkIdHasher(const ChunkIdHasher&) = delete;
  ChunkIdHasher& operator=(const ChunkIdHasher&) = delete;
  void Reset();  // forget everything given so far
  void Update(std::string_view data);
  ChunkId Finish() const;  // of everything since construction or Reset(): ChunkId::Of(it)

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// For unordered containers: the id is already a good hash.
struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const {
    size_t h;
    static_assert(sizeof(h) <= sizeof(id.bytes));
    __builtin_memcpy(&h, id.bytes.data(), sizeof(h));
    return h;
  }
};

// Where a piece of a file's contents is: `size` bytes at `offset` in chunk `id`. A large file's
// chunks hold only its bytes (offset 0, size = the chunk's size); the small files of a store
// path are packed into shared chunks, each at its own offset (see docs/cache.md).
struct ChunkRef {
  ChunkId id;
  uint32_t size = 0;    // bytes of file content in this chunk
  uint32_t offset = 0;  // where they start in the chunk
};

class PathMeta {
 public:
  enum class Type : uint8_t { kDirectory = 1, kRegular = 2, kSymlink = 3 };

  struct Node {
    Type type = Type::kDirectory;
    bool executable = false;
    uint32_t parent = 0;       // the root is its own parent
    uint32_t name_offset = 0;  // into the string table; the root's name is empty
    uint32_t name_length = 0;
    uint64_t size = 0;   // regular: file size; symlink: target length; dir: child count
    uint64_t first = 0;  // dir: first child index; regular: first chunk; symlink: target offset
    uint64_t count = 0;  // dir: number of children; regular: number of chunks
  };

  // Accessors. `index` must be < node_count().
  uint32_t node_count() const;
  const Node& node(uint32_t index) const;
  std::string_view name(uint32_t index) const;
  std::string_view symlink_target(uint32_t index) const;
  std::span<const ChunkRef> chunks(uint32_t index) const;  // of a regular file, in order
  // The offset within the file of each of chunks(index), ascending (first is 0): Read finds the
  // chunk holding a byte by binary search over these. Computed at Load/Build, not stored.
  std::span<const uint64_t> chunk_offsets(uint32_t index) const;
  // The index of the chunk of regular file `index` that holds byte `offset` (< size).
  size_t ChunkAt(uint32_t index, uint64_t offset) const;
  // The index of `name` in directory `dir`, or nullopt.
  std::optional<uint32_t> Lookup(uint32_t dir, std::string_view name) const;

  // Total bytes of regular-file contents.
  uint64_t content_bytes() const;

  // All chunk references of all files, in node order (duplicates included).
  std::span<const ChunkRef> all_chunks() const { return chunks_; }

  // Format (little endian): "NLSMETA1" magic, u32 version (2), u32 node count, u64 chunk count,
  // u64 string table size, node records (40 bytes each), chunk records (16-byte id + u32 size +
  // u32 offset), the string table, then the XXH3-64 of everything before it. Load also reads
  // version 1 (chunk records without the offset). See docs/cache.md.
  std::string Serialize() const;
  // Throws FormatError (bad magic, version, checksum, or inconsistent indices). Every index is
  // checked, so a loaded PathMeta's accessors never go out of bounds.
  static std::shared_ptr<const PathMeta> Load(std::string_view bytes);

 private:
  friend class PathMetaBuilder;
  void ComputeOffsets();  // fills chunk_offsets_ and content_bytes_
  std::vector<Node> nodes_;
  std::vector<ChunkRef> chunks_;
  std::vector<uint64_t> chunk_offsets_;  // parallel to chunks_
  std::string strings_;
  uint64_t content_bytes_ = 0;
};

// Builds a PathMeta from NAR order events (parents before children, children sorted).
class PathMetaBuilder {
 public:
  // `path` is relative to the root as in NarSink ("" is the root).
  void AddDirectory(std::string_view path);
  void AddRegular(std::string_view path, bool executable, uint64_t size,
                  std::vector<ChunkRef> chunks);
  void AddSymlink(std::string_view path, std::string_view target);
  // Lays the tree out breadth-first (children consecutive, sorted). Throws FormatError if an
  // entry's parent was not added as a directory or a name repeats.
  std::shared_ptr<const PathMeta> Build();

 private:
  struct Entry {
    PathMeta::Type type = PathMeta::Type::kDirectory;
    bool executable = false;
    uint64_t size = 0;
    std::string name;
    std::string target;
    std::vector<ChunkRef> chunks;
    std::vector<uint32_t> children;  // entry indices
  };
  uint32_t Add(std::string_view path, Entry entry);
  std::vector<Entry> entries_;
  std::unordered_map<std::string, uint32_t> dirs_;  // directory path -> entry, for parents
};

}  // namespace nls
