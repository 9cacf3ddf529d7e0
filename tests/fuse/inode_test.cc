#include "fuse/inode.h"

#include <gtest/gtest.h>

#include "fuse/figures.h"

namespace nls {
namespace {

TEST(InodeTest, Encoding) {
  EXPECT_EQ(MakeIno(1, 0), (1ull << 32) | 1);
  EXPECT_EQ(MakeIno(7, 41), (7ull << 32) | 42);
  for (uint64_t id : {1ull, 2ull, 0xffffffffull}) {
    for (uint32_t node : {0u, 1u, 12345u, 0xfffffffdu}) {
      uint64_t ino = MakeIno(id, node);
      EXPECT_TRUE(IsPathIno(ino));
      EXPECT_EQ(PathIdOfIno(ino), id);
      EXPECT_EQ(NodeOfIno(ino), node);
      EXPECT_NE(ino, kRootIno);
    }
  }
  EXPECT_FALSE(IsPathIno(kRootIno));
  EXPECT_FALSE(IsPathIno(5ull << 32));  // low half 0 is never a node
}

std::shared_ptr<const PathMeta> SampleMeta() {
  PathMetaBuilder b;
  b.AddDirectory("");
  b.AddDirectory("bin");
  b.AddRegular("bin/prog", true, 10000, {ChunkRef{ChunkId::Of("x"), 10000}});
  b.AddRegular("data.txt", false, 5, {ChunkRef{ChunkId::Of("hello"), 5}});
  b.AddDirectory("lib");
  b.AddDirectory("lib/sub");
  b.AddSymlink("link", "bin/prog");
  b.AddRegular("empty", false, 0, {});
  return b.Build();
}

TEST(InodeTest, Attributes) {
  auto meta = SampleMeta();
  struct stat root = NodeAttr(*meta, 0, MakeIno(3, 0));
  EXPECT_EQ(root.st_mode, S_IFDIR | 0555);
  EXPECT_EQ(root.st_nlink, 4u);  // 2 + bin + lib
  EXPECT_EQ(root.st_ino, MakeIno(3, 0));
  EXPECT_EQ(root.st_mtim.tv_sec, 1);
  EXPECT_EQ(root.st_uid, 0u);
  EXPECT_EQ(root.st_gid, 0u);
  EXPECT_EQ(SubdirectoryCount(*meta, 0), 2u);

  auto node = [&](const char* dir_name, const char* name) {
    uint32_t dir = 0;
    if (dir_name) dir = *meta->Lookup(0, dir_name);
    return *meta->Lookup(dir, name);
  };
  struct stat prog = NodeAttr(*meta, node("bin", "prog"), 9);
  EXPECT_EQ(prog.st_mode, S_IFREG | 0555);
  EXPECT_EQ(prog.st_size, 10000);
  EXPECT_EQ(prog.st_blocks, 20);
  EXPECT_EQ(prog.st_nlink, 1u);
  struct stat data = NodeAttr(*meta, node(nullptr, "data.txt"), 9);
  EXPECT_EQ(data.st_mode, S_IFREG | 0444);
  EXPECT_EQ(data.st_size, 5);
  EXPECT_EQ(data.st_blocks, 1);
  struct stat empty = NodeAttr(*meta, node(nullptr, "empty"), 9);
  EXPECT_EQ(empty.st_size, 0);
  EXPECT_EQ(empty.st_blocks, 0);
  struct stat link = NodeAttr(*meta, node(nullptr, "link"), 9);
  EXPECT_EQ(link.st_mode, S_IFLNK | 0777);
  EXPECT_EQ(link.st_size, 8);
  struct stat lib = NodeAttr(*meta, node(nullptr, "lib"), 9);
  EXPECT_EQ(lib.st_nlink, 3u);
  struct stat sub = NodeAttr(*meta, node("lib", "sub"), 9);
  EXPECT_EQ(sub.st_nlink, 2u);

  struct stat r = RootAttr();
  EXPECT_EQ(r.st_ino, kRootIno);
  EXPECT_EQ(r.st_mode, S_IFDIR | 0555);
}

TEST(FiguresTest, XattrsAndPrometheus) {
  std::vector<Figure> f = {{"paths_cached", 3, "Paths.", false}, {"hits", 10, "Hits.", true}};
  EXPECT_EQ(XattrNameList(f),
            std::string("user.nix-lazy-store.paths_cached\0user.nix-lazy-store.hits\0", 58));
  EXPECT_EQ(*XattrValue(f, "user.nix-lazy-store.hits"), "10");
  EXPECT_FALSE(XattrValue(f, "user.nix-lazy-store.nope"));
  EXPECT_FALSE(XattrValue(f, "user.other.hits"));
  EXPECT_FALSE(XattrValue(f, "hits"));
  EXPECT_EQ(PrometheusText(f),
            "# HELP nix_lazy_store_paths_cached Paths.\n"
            "# TYPE nix_lazy_store_paths_cached gauge\n"
            "nix_lazy_store_paths_cached 3\n"
            "# HELP nix_lazy_store_hits_total Hits.\n"
            "# TYPE nix_lazy_store_hits_total counter\n"
            "nix_lazy_store_hits_total 10\n");
}

}  // namespace
}  // namespace nls
