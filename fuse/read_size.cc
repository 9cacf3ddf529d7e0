#include "fuse/read_size.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "fetch/log.h"

namespace nls {
namespace {

constexpr size_t kHeaderBytes = 16;  // struct fuse_out_header
constexpr size_t kMinPages = 16;

size_t PageSize() {
  long page = ::sysconf(_SC_PAGESIZE);
  return page > 0 ? size_t(page) : 4096;
}

// What libfuse asks F_SETPIPE_SZ for to splice a reply of `len` bytes in `pieces` pieces.
size_t PipeBytesFor(size_t len, size_t pieces, size_t page) {
  return page * (pieces + 2) + kHeaderBytes + len;
}

}  // namespace

size_t SpliceableReadSize(size_t wanted, size_t max_pieces, size_t pipe_bytes, size_t page) {
  const size_t pipe_pages = pipe_bytes / page;
  const size_t overhead = PipeBytesFor(0, max_pieces, page);
  const size_t slots_overhead = 2 * max_pieces + 1;
  if (pipe_bytes <= overhead || pipe_pages <= slots_overhead) return 0;
  size_t pages =
      std::min({wanted / page, (pipe_bytes - overhead) / page, pipe_pages - slots_overhead});
  return pages < kMinPages ? 0 : pages * page;
}

size_t LargestPipe(size_t want) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return 0;
  int got = ::fcntl(fds[0], F_SETPIPE_SZ, int(want));
  if (got < 0) {
    size_t max = 0;
    std::ifstream in("/proc/sys/fs/pipe-max-size");
    if (in >> max && max > 0) got = ::fcntl(fds[0], F_SETPIPE_SZ, int(std::min(max, want)));
  }
  if (got < 0) got = ::fcntl(fds[0], F_GETPIPE_SZ);
  ::close(fds[0]);
  ::close(fds[1]);
  return got > 0 ? size_t(got) : 0;
}

size_t ReadSizeForSplicing(size_t wanted, size_t max_pieces) {
  const size_t page = PageSize();
  const size_t pipe = LargestPipe(PipeBytesFor(wanted, max_pieces, page));
  const size_t fits = SpliceableReadSize(wanted, max_pieces, pipe, page);
  if (fits == wanted / page * page) return wanted;
  if (fits == 0) {
    NLS_LOG(kInfo) << "pipes are limited to " << pipe << " bytes here: reads of " << wanted
                   << " bytes are copied, not spliced";
    return wanted;
  }
  NLS_LOG(kInfo) << "pipes are limited to " << pipe << " bytes here (no CAP_SYS_RESOURCE; "
                 << "/proc/sys/fs/pipe-max-size): reads of up to " << fits / 1024
                 << " KiB, so that their replies are spliced";
  return fits;
}

}  // namespace nls
