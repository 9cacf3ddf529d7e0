// The size of the reads the kernel sends (max_pages, readahead), chosen so that libfuse can
// splice the replies.
//
// libfuse (3.14) splices a reply of `len` bytes in `n` pieces only if it gets a pipe of
// page * (n + 2) + 16 + len bytes (F_SETPIPE_SZ); otherwise it preads the pieces into a freshly
// allocated buffer and writes that: two copies and a malloc instead of one copy. A spliced piece
// takes a pipe slot for every page it touches, so the pipe's slots must hold len / page + 2n + 1
// (the header). Without CAP_SYS_RESOURCE no pipe exceeds /proc/sys/fs/pipe-max-size (1 MiB by
// default), and 1 MiB reads would never be spliced: the read size is lowered to what fits.
#pragma once

#include <cstddef>

namespace nls {

// The largest multiple of `page` that is <= `wanted` and whose replies of at most `max_pieces`
// pieces fit a pipe of `pipe_bytes` bytes by both rules above; 0 if that is under 16 pages.
size_t SpliceableReadSize(size_t wanted, size_t max_pieces, size_t pipe_bytes, size_t page);

// The largest pipe (bytes) this process can have, as far as `want` bytes: F_SETPIPE_SZ is tried
// with `want`, and on refusal with /proc/sys/fs/pipe-max-size. 0 if no pipe can be made.
size_t LargestPipe(size_t want);

// The read size for replies of up to `max_pieces` pieces: `wanted` when its replies can be
// spliced here, else the largest size whose replies can, else `wanted` (replies are then copied).
size_t ReadSizeForSplicing(size_t wanted, size_t max_pieces);

}  // namespace nls
