#include "fuse/read_size.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace nls {
namespace {

constexpr size_t kPage = 4096;

// What libfuse 3.14 asks of the pipe, and what the pipe's slots must hold, for a reply of
// `len` bytes in `pieces` pieces.
bool Fits(size_t len, size_t pieces, size_t pipe_bytes) {
  return kPage * (pieces + 2) + 16 + len <= pipe_bytes &&
         len / kPage + 2 * pieces + 1 <= pipe_bytes / kPage;
}

TEST(SpliceableReadSize, BigPipeKeepsTheWantedSize) {
  EXPECT_EQ(SpliceableReadSize(1 << 20, 16, 2 << 20, kPage), size_t(1) << 20);
}

TEST(SpliceableReadSize, OneMebibytePipeLowersTheSizeToWhatFits) {
  size_t got = SpliceableReadSize(1 << 20, 16, 1 << 20, kPage);
  EXPECT_EQ(got % kPage, 0u);
  EXPECT_TRUE(Fits(got, 16, 1 << 20)) << got;
  EXPECT_FALSE(Fits(got + kPage, 16, 1 << 20)) << got;
  EXPECT_EQ(got, 223 * kPage);  // slots: 256 - (2 * 16 + 1)
  // Fewer pieces leave room for more data.
  size_t fewer = SpliceableReadSize(1 << 20, 4, 1 << 20, kPage);
  EXPECT_GT(fewer, got);
  EXPECT_TRUE(Fits(fewer, 4, 1 << 20)) << fewer;
}

TEST(SpliceableReadSize, NeverAboveTheWantedSizeAndZeroWhenTooSmall) {
  EXPECT_EQ(SpliceableReadSize(128 * 1024, 16, 1 << 20, kPage), 128u * 1024);
  EXPECT_EQ(SpliceableReadSize(1 << 20, 16, 64 * 1024, kPage), 0u);  // default pipe: 16 slots
  EXPECT_EQ(SpliceableReadSize(1 << 20, 16, 0, kPage), 0u);
}

TEST(LargestPipe, GivesAPipeThisProcessCanHave) {
  size_t pipe = LargestPipe(1 << 20);
  ASSERT_GT(pipe, 0u);
  EXPECT_LE(pipe, size_t(1) << 20);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  EXPECT_EQ(::fcntl(fds[0], F_SETPIPE_SZ, int(pipe)), int(pipe));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(ReadSizeForSplicing, ItsRepliesFitThePipeThisProcessGets) {
  size_t size = ReadSizeForSplicing(1 << 20, 16);
  ASSERT_GT(size, 0u);
  EXPECT_LE(size, size_t(1) << 20);
  size_t need = kPage * 18 + 16 + size;
  size_t pipe = LargestPipe(need);
  // Either the pipe holds it, or no useful size fits and reads stay 1 MiB (copied).
  EXPECT_TRUE(Fits(size, 16, pipe) ||
              (size == (1u << 20) && SpliceableReadSize(1 << 20, 16, pipe, kPage) == 0))
      << size << " " << pipe;
}

}  // namespace
}  // namespace nls
