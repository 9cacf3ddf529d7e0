#include "fuse/inode.h"

#include <cstring>

namespace nls {
namespace {

struct stat BaseAttr(uint64_t ino) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = ino;
  st.st_uid = 0;
  st.st_gid = 0;
  st.st_blksize = 4096;
  st.st_atim.tv_sec = 1;
  st.st_mtim.tv_sec = 1;
  st.st_ctim.tv_sec = 1;
  return st;
}

}  // namespace

uint64_t SubdirectoryCount(const PathMeta& meta, uint32_t node) {
  const PathMeta::Node& n = meta.node(node);
  uint64_t subdirs = 0;
  for (uint64_t i = 0; i < n.count; ++i) {
    if (meta.node(static_cast<uint32_t>(n.first + i)).type == PathMeta::Type::kDirectory) {
      ++subdirs;
    }
  }
  return subdirs;
}

struct stat NodeAttr(const PathMeta& meta, uint32_t node, uint64_t ino) {
  struct stat st = BaseAttr(ino);
  const PathMeta::Node& n = meta.node(node);
  switch (n.type) {
    case PathMeta::Type::kDirectory:
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = 2 + SubdirectoryCount(meta, node);
      st.st_size = 4096;
      st.st_blocks = 8;
      break;
    case PathMeta::Type::kRegular:
      st.st_mode = S_IFREG | (n.executable ? 0555 : 0444);
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(n.size);
      st.st_blocks = static_cast<blkcnt_t>((n.size + 511) / 512);
      break;
    case PathMeta::Type::kSymlink:
      st.st_mode = S_IFLNK | 0777;
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(meta.symlink_target(node).size());
      st.st_blocks = 0;
      break;
  }
  return st;
}

struct stat RootAttr() {
  struct stat st = BaseAttr(kRootIno);
  st.st_mode = S_IFDIR | 0555;
  st.st_nlink = 2;
  st.st_size = 4096;
  st.st_blocks = 8;
  return st;
}

}  // namespace nls
