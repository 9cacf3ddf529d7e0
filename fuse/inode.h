// Inode numbers and attributes of the lazy store.
//
// Inode scheme: the mount root is 1. Node `n` (PathMeta index; 0 is the store path itself) of
// the cached path with stable id `id` is (id << 32) | (n + 1). Ids are stable across restarts
// and re-fetches (StoreCache::IdFor), so inode numbers are too; as ids are never 0, no store
// path inode collides with the root. Ids must stay below 2^32 and node indices below 2^32 - 1.
//
// Attributes follow what Nix's store shows: files 0444 (0555 executable), directories 0555,
// symlinks 0777, mtime/atime/ctime 1, uid/gid 0, nlink 1 (directories 2 + subdirectories).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>

#include "cache/path_meta.h"

namespace nls {

inline constexpr uint64_t kRootIno = 1;

inline constexpr uint64_t MakeIno(uint64_t path_id, uint32_t node) {
  return (path_id << 32) | (static_cast<uint64_t>(node) + 1);
}
inline constexpr uint64_t PathIdOfIno(uint64_t ino) { return ino >> 32; }
// Only for ino != kRootIno with a non-zero low half.
inline constexpr uint32_t NodeOfIno(uint64_t ino) {
  return static_cast<uint32_t>(ino & 0xffffffffu) - 1;
}
// True if `ino` can be a store path inode (not the root, low half non-zero, id non-zero).
inline constexpr bool IsPathIno(uint64_t ino) {
  return PathIdOfIno(ino) != 0 && (ino & 0xffffffffu) != 0;
}

// The attributes of node `node` of `meta`, with inode number `ino`.
struct stat NodeAttr(const PathMeta& meta, uint32_t node, uint64_t ino);

// The attributes of the mount root.
struct stat RootAttr();

// The number of subdirectories of directory `node`.
uint64_t SubdirectoryCount(const PathMeta& meta, uint32_t node);

}  // namespace nls
