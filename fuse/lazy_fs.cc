#include "fuse/lazy_fs.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "fetch/error.h"
#include "fetch/log.h"
#include "fetch/store_path.h"
#include "fuse/fuse_api.h"
#include "fuse/inode.h"
#include "fuse/read_size.h"

namespace nls {
namespace {

constexpr size_t kMaxIoSize = 1 << 20;
constexpr size_t kSmallReply = 2 * 4096;  // libfuse splices replies of at least two pages
// A spliced reply has at most this many pieces (chunk file extents); one with more is copied.
constexpr size_t kMaxReplyPieces = 16;
// Eviction probes a path in kernel use at most this often; the invalidation thread checks the
// budget this often when idle.
constexpr std::chrono::seconds kProbeInterval{30};

LazyFs& Fs(fuse_req_t req) { return *static_cast<LazyFs*>(fuse_req_userdata(req)); }

int64_t WallClockNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct OpenFile {
  std::mutex mu;
  std::shared_ptr<CachedPath> path;
  uint32_t node = 0;
};

}  // namespace

// What readdir of the root returns, for one version of the cache's listing.
struct LazyFs::RootListing {
  struct Entry {
    std::string name;
    uint64_t ino;
    mode_t mode;
    off_t cookie;  // the entry's offset: its path's id + 2 (after "." and "..")
  };
  uint64_t version = 0;
  std::vector<Entry> entries;  // by cookie
};

struct LazyFs::Impl {
  static fuse_entry_param Entry(LazyFs& fs, const PathMeta& meta, uint64_t path_id, uint32_t node) {
    fuse_entry_param e;
    std::memset(&e, 0, sizeof(e));
    e.ino = MakeIno(path_id, node);
    e.generation = 0;
    e.attr = NodeAttr(meta, node, e.ino);
    e.attr_timeout = fs.options_.entry_timeout_s;
    e.entry_timeout = fs.options_.entry_timeout_s;
    return e;
  }

  static void ReplyIoError(LazyFs& fs, fuse_req_t req) {
    ++fs.counters_.io_errors;
    fuse_reply_err(req, EIO);
  }

  static void Init(void* userdata, fuse_conn_info* conn) {
    LazyFs& fs = *static_cast<LazyFs*>(userdata);
    auto want = [&](unsigned cap) {
      if (conn->capable & cap) conn->want |= cap;
    };
    want(FUSE_CAP_CACHE_SYMLINKS);
    want(FUSE_CAP_READDIRPLUS);
    want(FUSE_CAP_PARALLEL_DIROPS);
    want(FUSE_CAP_ASYNC_READ);
    // Let the kernel skip OPEN and RELEASE round trips altogether (it then keeps the page
    // cache, as keep_cache does); eviction goes by the kernel's lookup counts instead.
    if (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) {
      conn->want |= FUSE_CAP_NO_OPEN_SUPPORT;
      fs.no_open_ = true;
    }
    // Likewise OPENDIR and RELEASEDIR: every directory is then opened with keep_cache and
    // cache_readdir, the root too, whose cached listing ListingChanged() keeps current.
    if (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) {
      conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
      fs.no_opendir_ = true;
    }
    if (fs.options_.splice_reads && (conn->capable & FUSE_CAP_SPLICE_WRITE)) {
      conn->want |= FUSE_CAP_SPLICE_WRITE;
      fs.splice_ = true;
    }
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;  // always readdirplus: attrs are free here
    // The kernel then compares a directory's mtime with that of its cached listing at each
    // readdir from the start: how a new root listing reaches it. Store paths' mtimes never
    // change, so their page cache and listings stay.
    want(FUSE_CAP_AUTO_INVAL_DATA);
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    // max_write also sets the kernel's max_pages: the size of its read requests.
    conn->max_write = unsigned(fs.read_size_);
    conn->max_readahead = std::min<unsigned>(conn->max_readahead, unsigned(fs.read_size_));
    conn->time_gran = 1;
    fs.initialized_ = true;
  }

  static void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    LazyFs& fs = Fs(req);
    ++fs.counters_.lookups;
    if (parent == kRootIno) {
      ++fs.counters_.root_lookups;
      std::string_view base(name);
      auto sp = StorePath::TryFromBaseName(base);
      if (!sp) {
        fuse_reply_err(req, ENOENT);
        return;
      }
      // Counted until answered: the kernel holds the root's lock meanwhile (SendInvalidation).
      ++fs.root_lookups_running_;
      struct Answered {
        std::atomic<int>& running;
        ~Answered() { --running; }
      } answered{fs.root_lookups_running_};
      std::shared_ptr<CachedPath> path;
      try {
        path = fs.lazy_.Get(sp->hash_part());
      } catch (const std::exception& e) {
        // LazyStore logged the details per substituter; this line names the path as asked for.
        NLS_LOG(kError) << "lookup of /nix/store/" << base << " failed (EIO): " << e.what();
        ReplyIoError(fs, req);
        return;
      }
      if (!path || path->path.base_name() != base) {
        if (fs.options_.negative_root_timeout_s > 0) {
          fuse_entry_param e;
          std::memset(&e, 0, sizeof(e));
          e.entry_timeout = fs.options_.negative_root_timeout_s;
          fuse_reply_entry(req, &e);
        } else {
          fuse_reply_err(req, ENOENT);
        }
        return;
      }
      if (!fs.AgreesWithKernel(*path)) {
        NLS_LOG(kError) << "lookup of /nix/store/" << base << " failed (EIO): it was fetched "
                        << "again with other contents (NarHash "
                        << path->info.nar_hash.ToNixString()
                        << ") while the kernel still uses the copy it had before";
        ReplyIoError(fs, req);
        return;
      }
      fuse_entry_param e = Entry(fs, *path->meta, path->id, 0);
      fs.Ref(*path);
      if (fuse_reply_entry(req, &e) != 0) fs.Forget(e.ino, 1);
      return;
    }
    auto path = fs.PathOf(parent);
    if (!path) {
      fuse_reply_err(req, ESTALE);
      return;
    }
    const PathMeta& meta = *path->meta;
    const uint32_t dir = NodeOfIno(parent);
    if (dir >= meta.node_count() || meta.node(dir).type != PathMeta::Type::kDirectory) {
      fuse_reply_err(req, ENOTDIR);
      return;
    }
    auto child = meta.Lookup(dir, name);
    if (!child) {
      // Store paths are immutable: the kernel may remember this absence as long as the entry.
      fuse_entry_param e;
      std::memset(&e, 0, sizeof(e));
      e.entry_timeout = fs.options_.entry_timeout_s;
      fuse_reply_entry(req, &e);
      return;
    }
    fuse_entry_param e = Entry(fs, meta, path->id, *child);
    fs.Ref(path);
    if (fuse_reply_entry(req, &e) != 0) fs.Forget(e.ino, 1);
  }

  static void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    Fs(req).Forget(ino, nlookup);
    fuse_reply_none(req);
  }

  static void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    LazyFs& fs = Fs(req);
    for (size_t i = 0; i < count; ++i) fs.Forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
  }

  static void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    LazyFs& fs = Fs(req);
    if (ino == kRootIno) {
      // Kept by the kernel (default_permissions checks it on every path walk) until the
      // listing changes (ListingChanged).
      struct stat st = fs.RootStat();
      fuse_reply_attr(req, &st, fs.options_.entry_timeout_s);
      return;
    }
    auto path = fs.PathOf(ino);
    const uint32_t node = NodeOfIno(ino);
    if (!path || node >= path->meta->node_count()) {
      fuse_reply_err(req, ESTALE);
      return;
    }
    struct stat st = NodeAttr(*path->meta, node, ino);
    fuse_reply_attr(req, &st, fs.options_.entry_timeout_s);
  }

  static void ReadLink(fuse_req_t req, fuse_ino_t ino) {
    LazyFs& fs = Fs(req);
    auto path = ino == kRootIno ? nullptr : fs.PathOf(ino);
    if (!path) {
      fuse_reply_err(req, ino == kRootIno ? EINVAL : ESTALE);
      return;
    }
    const uint32_t node = NodeOfIno(ino);
    if (node >= path->meta->node_count() ||
        path->meta->node(node).type != PathMeta::Type::kSymlink) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    std::string target(path->meta->symlink_target(node));
    fuse_reply_readlink(req, target.c_str());
  }

  static void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    LazyFs& fs = Fs(req);
    ++fs.counters_.opendir_requests;
    if (fs.no_opendir_) {
      // The kernel agreed to FUSE_CAP_NO_OPENDIR_SUPPORT: this answer ends OPENDIR requests.
      fuse_reply_err(req, ENOSYS);
      return;
    }
    fi->fh = 0;
    if (ino == kRootIno) {
      fuse_reply_open(req, fi);  // not cached: the listing changes with every fetch
      return;
    }
    if (!fs.PathOf(ino)) {
      fuse_reply_err(req, ESTALE);
      return;
    }
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  }

  static void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
                            fuse_file_info*, bool plus) {
    LazyFs& fs = Fs(req);
    size = std::min(size, kMaxIoSize);
    std::vector<char> buf(size);
    size_t used = 0;
    // Entry k (k >= 0) of the listing: 0 ".", 1 "..", then the children. The offset of an entry
    // is the index of the one after it.
    auto add = [&](const char* name, const struct stat& st, off_t next,
                   const fuse_entry_param* e) -> bool {
      size_t need;
      if (plus) {
        fuse_entry_param copy;
        if (e) {
          copy = *e;
        } else {
          std::memset(&copy, 0, sizeof(copy));
          copy.attr = st;
        }
        need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &copy, next);
      } else {
        need = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
      }
      if (need > size - used) return false;
      used += need;
      return true;
    };

    if (ino == kRootIno) {
      std::shared_ptr<const RootListing> listing;
      try {
        listing = fs.CurrentRootListing();
      } catch (const std::exception& e) {
        NLS_LOG(kError) << "listing the cache: " << e.what();
        ReplyIoError(fs, req);
        return;
      }
      const struct stat root = fs.RootStat();
      bool full = false;
      for (off_t k = std::max<off_t>(offset, 0); k < 2 && !full; ++k) {
        full = !add(k == 0 ? "." : "..", root, k + 1, nullptr);
      }
      // Then the paths, by cookie (id + 2 > 1): an offset stays valid while paths come and go.
      auto it = std::upper_bound(listing->entries.begin(), listing->entries.end(), offset,
                                 [](off_t o, const RootListing::Entry& e) { return o < e.cookie; });
      if (!full) {
        for (; it != listing->entries.end(); ++it) {
          struct stat st;
          std::memset(&st, 0, sizeof(st));
          st.st_ino = it->ino;
          st.st_mode = it->mode;
          // No lookup reference is handed out for root entries (ino 0 in readdirplus):
          // listing the store must not pin every cached path.
          if (!add(it->name.c_str(), st, it->cookie, nullptr)) break;
        }
      }
      fuse_reply_buf(req, buf.data(), used);
      return;
    }

    auto path = fs.PathOf(ino);
    if (!path) {
      fuse_reply_err(req, ESTALE);
      return;
    }
    const PathMeta& meta = *path->meta;
    const uint32_t dir = NodeOfIno(ino);
    if (dir >= meta.node_count() || meta.node(dir).type != PathMeta::Type::kDirectory) {
      fuse_reply_err(req, ENOTDIR);
      return;
    }
    const PathMeta::Node& d = meta.node(dir);
    const off_t total = 2 + static_cast<off_t>(d.count);
    uint64_t refs = 0;
    for (off_t k = std::max<off_t>(offset, 0); k < total; ++k) {
      if (k < 2) {
        struct stat st;
        std::memset(&st, 0, sizeof(st));
        st.st_mode = S_IFDIR;
        st.st_ino = k == 0 ? ino : (dir == 0 ? kRootIno : MakeIno(path->id, meta.node(dir).parent));
        if (!add(k == 0 ? "." : "..", st, k + 1, nullptr)) break;
        continue;
      }
      const uint32_t child = static_cast<uint32_t>(d.first + (k - 2));
      std::string name(meta.name(child));
      fuse_entry_param e = Entry(fs, meta, path->id, child);
      if (!add(name.c_str(), e.attr, k + 1, plus ? &e : nullptr)) break;
      if (plus) ++refs;  // each readdirplus entry counts as a lookup
    }
    if (refs > 0) fs.Ref(path, refs);
    // The kernel did not take the entries (the caller was killed meanwhile): no lookups to count.
    if (fuse_reply_buf(req, buf.data(), used) != 0 && refs > 0) fs.Forget(ino, refs);
  }

  static void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    ReadDirCommon(req, ino, size, off, fi, false);
  }
  static void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                          fuse_file_info* fi) {
    ReadDirCommon(req, ino, size, off, fi, true);
  }

  static void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    LazyFs& fs = Fs(req);
    ++fs.counters_.open_requests;
    if (fs.no_open_ && ino != kRootIno) {
      fuse_reply_err(req, ENOSYS);  // the kernel stops sending OPEN/RELEASE for files
      return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
      fuse_reply_err(req, EROFS);
      return;
    }
    if (ino == kRootIno) {
      fuse_reply_err(req, EISDIR);
      return;
    }
    auto known = fs.PathOf(ino);
    if (!known) {
      fuse_reply_err(req, ESTALE);
      return;
    }
    const uint32_t node = NodeOfIno(ino);
    if (node >= known->meta->node_count() ||
        known->meta->node(node).type != PathMeta::Type::kRegular) {
      fuse_reply_err(req, EISDIR);
      return;
    }
    std::shared_ptr<CachedPath> live;
    try {
      live = fs.LivePath(*known);
    } catch (const std::exception& e) {
      NLS_LOG(kError) << "opening " << known->path.FullPath() << ": " << e.what();
      ReplyIoError(fs, req);
      return;
    }
    if (!live) {
      NLS_LOG(kError) << "opening " << known->path.FullPath()
                      << ": the path was evicted and cannot be fetched again with the same "
                         "contents";
      fuse_reply_err(req, ESTALE);
      return;
    }
    auto file = std::make_unique<OpenFile>();
    file->path = live;
    file->node = node;
    ++live->open_files;
    ++fs.counters_.open_files;
    fi->keep_cache = 1;
    fi->noflush = 1;
    fi->fh = reinterpret_cast<uint64_t>(file.get());
    if (fuse_reply_open(req, fi) == 0) {
      file.release();  // owned by the kernel's file handle until Release
    } else {
      --live->open_files;
      --fs.counters_.open_files;
    }
  }

  static void Release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    LazyFs& fs = Fs(req);
    std::unique_ptr<OpenFile> file(reinterpret_cast<OpenFile*>(fi->fh));
    if (file) {
      std::lock_guard lock(file->mu);
      --file->path->open_files;
      --fs.counters_.open_files;
    }
    fuse_reply_err(req, 0);
  }

  // Answers a read with the chunk files' bytes spliced into the reply (libfuse falls back to
  // copying when splicing is not possible). False, with nothing sent, when the cache wants the
  // bytes read (and verified) by Read() instead.
  static bool ReplySpliced(LazyFs& fs, fuse_req_t req, const CachedPath& path, uint32_t node,
                           size_t size, off_t offset) {
    // A fuse_bufvec ends in a one-element array; `more` extends it, as libfuse's examples do.
    constexpr size_t kMaxExtents = kMaxReplyPieces;
    struct BufVec {
      fuse_bufvec v;
      fuse_buf more[kMaxExtents - 1];
    };
    static_assert(offsetof(BufVec, more) == offsetof(BufVec, v.buf) + sizeof(fuse_buf));
    auto extents = fs.cache_.Extents(path, node, static_cast<uint64_t>(offset), size, kMaxExtents);
    if (!extents) return false;
    BufVec bv{};
    size_t total = 0;
    bv.v.count = extents->size();
    for (size_t i = 0; i < extents->size(); ++i) {
      fuse_buf& b = i == 0 ? bv.v.buf[0] : bv.more[i - 1];
      const StoreCache::Extent& e = (*extents)[i];
      b.size = e.size;
      b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      b.fd = e.fd;
      b.pos = static_cast<off_t>(e.offset);
      total += e.size;
    }
    ++fs.counters_.reads;
    fs.counters_.read_bytes += total;
    if (total == 0) {
      fuse_reply_buf(req, nullptr, 0);
    } else if (total < kSmallReply) {
      // libfuse does not splice under two pages: it would malloc a buffer per reply and pread
      // into it. This thread's small buffer does the same without the allocation (fresh memory
      // costs page faults).
      thread_local std::array<char, kSmallReply> small;
      size_t got = 0;
      for (const StoreCache::Extent& e : *extents) {
        ssize_t r = ::pread(e.fd, small.data() + got, e.size, static_cast<off_t>(e.offset));
        if (r != static_cast<ssize_t>(e.size)) return false;  // the copying path reports it
        got += e.size;
      }
      fuse_reply_buf(req, small.data(), got);
    } else {
      fs.counters_.read_bytes_spliced += total;
      fuse_reply_data(req, &bv.v, static_cast<fuse_buf_copy_flags>(0));
    }
    return true;
  }

  static void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
    LazyFs& fs = Fs(req);
    auto* file = reinterpret_cast<OpenFile*>(fi->fh);
    size = std::min(size, kMaxIoSize);
    std::shared_ptr<CachedPath> path;
    uint32_t node = NodeOfIno(ino);
    if (file) {
      std::lock_guard lock(file->mu);
      path = file->path;
      node = file->node;
    } else {
      // No open/release from the kernel (FUSE_CAP_NO_OPEN_SUPPORT): resolve per read.
      auto ref = fs.PathOf(ino);
      if (!ref) {
        fuse_reply_err(req, ESTALE);
        return;
      }
      try {
        path = fs.LivePath(*ref);
      } catch (const std::exception& e) {
        NLS_LOG(kError) << "reading " << ref->path.FullPath() << ": " << e.what();
      }
      if (!path) {
        ReplyIoError(fs, req);
        return;
      }
    }
    for (int attempt = 0;; ++attempt) {
      try {
        if (fs.splice_ && ReplySpliced(fs, req, *path, node, size, offset)) return;
        // Allocated on first use by this thread, not zero-filled: most reads are spliced.
        thread_local std::unique_ptr<char[]> buf;
        if (!buf) buf = std::make_unique_for_overwrite<char[]>(kMaxIoSize);
        size_t n = fs.cache_.Read(*path, node, static_cast<uint64_t>(offset),
                                  std::span<char>(buf.get(), size));
        ++fs.counters_.reads;
        fs.counters_.read_bytes += n;
        fuse_reply_buf(req, buf.get(), n);
        return;
      } catch (const std::exception& e) {
        NLS_LOG(kError) << "reading " << path->path.FullPath() << " (inode " << ino
                        << ") at offset " << offset << ": " << e.what();
        if (attempt > 0) break;
      }
      // The cache dropped the path (damaged chunk) or it went away: fetch it again, once. (If it
      // kept it, a chunk's damaged copy was replaced while being read: read again, once.)
      std::shared_ptr<CachedPath> fresh;
      try {
        fresh = fs.lazy_.Get(path->path.hash_part());
      } catch (const std::exception& e) {
        NLS_LOG(kError) << "re-fetching " << path->path.FullPath() << ": " << e.what();
      }
      if (!fresh) break;
      if (fresh.get() == path.get()) continue;
      if (fresh->info.nar_hash != path->info.nar_hash) {
        NLS_LOG(kError) << path->path.FullPath() << " was fetched again with other contents "
                        << "(NarHash " << fresh->info.nar_hash.ToNixString() << ")";
        break;
      }
      if (!file) {
        path = fresh;
        continue;
      }
      {
        std::lock_guard lock(file->mu);
        if (file->path == path) {
          ++fresh->open_files;
          --file->path->open_files;
          file->path = fresh;
        }
        path = file->path;
      }
    }
    ReplyIoError(fs, req);
  }

  static void StatFs(fuse_req_t req, fuse_ino_t) {
    LazyFs& fs = Fs(req);
    struct statvfs st;
    std::memset(&st, 0, sizeof(st));
    st.f_bsize = 4096;
    st.f_frsize = 4096;
    st.f_namemax = 255;
    try {
      CacheStats cs = fs.cache_.Stats();
      st.f_blocks = (cs.bytes_used + 4095) / 4096;
      st.f_files = cs.paths;
    } catch (const std::exception& e) {
      NLS_LOG(kWarn) << "statfs: " << e.what();
    }
    fuse_reply_statfs(req, &st);
  }

  static void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    LazyFs& fs = Fs(req);
    if (ino != kRootIno) {
      fuse_reply_err(req, ENODATA);
      return;
    }
    auto value = XattrValue(fs.Figures(), name);
    if (!value) {
      fuse_reply_err(req, ENODATA);
      return;
    }
    if (size == 0) {
      fuse_reply_xattr(req, value->size());
    } else if (size < value->size()) {
      fuse_reply_err(req, ERANGE);
    } else {
      fuse_reply_buf(req, value->data(), value->size());
    }
  }

  static void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    LazyFs& fs = Fs(req);
    std::string names = ino == kRootIno ? XattrNameList(fs.Figures()) : std::string();
    if (size == 0) {
      fuse_reply_xattr(req, names.size());
    } else if (size < names.size()) {
      fuse_reply_err(req, ERANGE);
    } else {
      fuse_reply_buf(req, names.data(), names.size());
    }
  }
};

const fuse_lowlevel_ops& LazyFs::Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof(o));
    o.init = Impl::Init;
    o.lookup = Impl::Lookup;
    o.forget = Impl::Forget;
    o.forget_multi = Impl::ForgetMulti;
    o.getattr = Impl::GetAttr;
    o.readlink = Impl::ReadLink;
    o.opendir = Impl::OpenDir;
    o.readdir = Impl::ReadDir;
    o.readdirplus = Impl::ReadDirPlus;
    o.open = Impl::Open;
    o.read = Impl::Read;
    o.release = Impl::Release;
    o.statfs = Impl::StatFs;
    o.getxattr = Impl::GetXattr;
    o.listxattr = Impl::ListXattr;
    return o;
  }();
  return ops;
}

LazyFs::LazyFs(StoreCache& cache, Fetcher& fetcher, LazyStore& lazy, LazyFsOptions options)
    : cache_(cache),
      fetcher_(fetcher),
      lazy_(lazy),
      options_(options),
      read_size_(options.splice_reads ? ReadSizeForSplicing(kMaxIoSize, kMaxReplyPieces)
                                      : kMaxIoSize),
      root_mtime_ns_(WallClockNs()) {}

LazyFs::~LazyFs() { StopInvalidator(); }

struct stat LazyFs::RootStat() const {
  struct stat st = RootAttr();
  const int64_t ns = root_mtime_ns_.load();
  st.st_mtim = {time_t(ns / 1000000000), long(ns % 1000000000)};
  st.st_ctim = st.st_mtim;
  return st;
}

std::shared_ptr<const LazyFs::RootListing> LazyFs::CurrentRootListing() {
  // The kernel may cache what is returned from here on: a later change must reach it.
  root_listed_ = true;
  const uint64_t version = listing_version_.load();
  {
    std::lock_guard lock(root_mu_);
    if (root_listing_ && root_listing_->version == version) return root_listing_;
  }
  auto listing = std::make_shared<RootListing>();
  listing->version = version;
  for (const StorePath& sp : cache_.List()) {
    const uint64_t id = cache_.IdFor(sp);
    auto cached = cache_.FindById(id);
    if (!cached) continue;  // evicted meanwhile
    const uint64_t ino = MakeIno(id, 0);
    const mode_t type = NodeAttr(*cached->meta, 0, ino).st_mode & S_IFMT;
    listing->entries.push_back({sp.base_name(), ino, type, off_t(id + 2)});
  }
  std::sort(
      listing->entries.begin(), listing->entries.end(),
      [](const RootListing::Entry& a, const RootListing::Entry& b) { return a.cookie < b.cookie; });
  std::lock_guard lock(root_mu_);
  if (!root_listing_ || root_listing_->version <= version) root_listing_ = listing;
  return listing;
}

void LazyFs::ListingChanged() {
  // A new version of the listing, then a strictly later mtime for the root. In this order: a
  // GETATTR that sees the new mtime is followed by a READDIR that sees the new version, so
  // the kernel never tags a listing from before the change with the mtime from after it.
  ++listing_version_;
  const int64_t now = WallClockNs();
  int64_t prev = root_mtime_ns_.load();
  while (!root_mtime_ns_.compare_exchange_weak(prev, std::max(now, prev + 1))) {
  }
  // Where the kernel caches the root's listing (no OPENDIR), it reads it again once it sees
  // the root's new mtime, but it keeps the root's attributes for a year: drop them. Attributes
  // only: that takes no lock in the kernel, so any thread may do it, one serving a LOOKUP in
  // the root included (a fetch commits there), before its reply.
  if (no_opendir_ && root_listed_.exchange(false)) {
    fuse_lowlevel_notify_inval_inode(session_, kRootIno, -1, 0);
  }
}

std::shared_ptr<const LazyFs::PathRef> LazyFs::Ref(const CachedPath& path, uint64_t n) {
  std::lock_guard lock(mu_);
  PathEntry& entry = paths_[path.id];
  entry.nlookup += n;
  if (!entry.ref || entry.ref->meta != path.meta) {
    entry.ref = PathRef::Of(path);
  }
  return entry.ref;
}

void LazyFs::Ref(const std::shared_ptr<const PathRef>& ref, uint64_t n) {
  std::lock_guard lock(mu_);
  PathEntry& entry = paths_[ref->id];
  entry.nlookup += n;
  if (!entry.ref) entry.ref = ref;
}

void LazyFs::Forget(uint64_t ino, uint64_t n) {
  if (!IsPathIno(ino)) return;
  std::lock_guard lock(mu_);
  auto it = paths_.find(PathIdOfIno(ino));
  if (it == paths_.end()) return;
  if (it->second.nlookup <= n) {
    paths_.erase(it);
  } else {
    it->second.nlookup -= n;
  }
}

std::shared_ptr<const LazyFs::PathRef> LazyFs::PathOf(uint64_t ino) {
  if (!IsPathIno(ino)) return nullptr;
  const uint64_t id = PathIdOfIno(ino);
  {
    std::lock_guard lock(mu_);
    auto it = paths_.find(id);
    if (it != paths_.end()) return it->second.ref;
  }
  // Not referenced by the kernel (should not happen for an inode it uses): ask the cache.
  auto cached = cache_.FindById(id);
  if (!cached) return nullptr;
  return PathRef::Of(*cached);
}

std::shared_ptr<CachedPath> LazyFs::LivePath(const PathRef& ref) {
  auto live = cache_.FindById(ref.id);
  if (!live) {
    NLS_LOG(kInfo) << ref.path.FullPath() << " was evicted while in use; fetching it again";
    live = lazy_.Get(ref.path.hash_part());
    if (!live || live->id != ref.id) return nullptr;
  }
  if (live->info.nar_hash == ref.nar_hash) return live;
  NLS_LOG(kError) << ref.path.FullPath() << " is cached with other contents now (NarHash "
                  << live->info.nar_hash.ToNixString() << ", was " << ref.nar_hash.ToNixString()
                  << "): files opened before cannot be read";
  return nullptr;
}

bool LazyFs::AgreesWithKernel(const CachedPath& path) {
  std::lock_guard lock(mu_);
  auto it = paths_.find(path.id);
  return it == paths_.end() || !it->second.ref || it->second.ref->nar_hash == path.info.nar_hash;
}

void LazyFs::StartInvalidator(fuse_session* session) {
  session_ = session;
  auto queue = [this](const CachedPath& path, bool probe) {
    {
      std::lock_guard lock(inval_mu_);
      inval_queue_.push_back({path.path.base_name(), path.id, probe});
    }
    inval_cv_.notify_one();
  };
  cache_.SetEvictionListener([queue](const CachedPath& path) { queue(path, false); });
  cache_.SetListingListener([this] { ListingChanged(); });
  // A path the kernel still references is not evicted (a process may have a file of it open or
  // mapped, or be inside it); eviction asks the kernel to drop the path's root entry instead.
  // What no process uses goes with it (FORGET), and a later eviction takes the path; a path
  // still in use is looked up again, which marks it recently used.
  cache_.SetEvictionGuard(
      [this](uint64_t id) {
        std::lock_guard lock(mu_);
        return paths_.count(id) > 0;
      },
      [queue](const CachedPath& path) { queue(path, true); },
      std::chrono::duration<double>(kProbeInterval).count());
  invalidator_ = std::thread([this] {
    std::unique_lock lock(inval_mu_);
    // Runs an eviction outside the queue's lock (it may queue more).
    auto evict = [&](auto&& run, const char* what) {
      lock.unlock();
      try {
        run();
      } catch (const std::exception& e) {
        NLS_LOG(kError) << what << ": " << e.what();
      }
      lock.lock();
    };
    while (true) {
      // Every probe interval without work, eviction runs if the cache is over its high
      // watermark: paths that were in use at the last commit may be idle now.
      if (!inval_cv_.wait_for(lock, kProbeInterval,
                              [&] { return inval_stop_ || !inval_queue_.empty(); })) {
        evict([&] { cache_.EvictIfOver(); }, "periodic eviction");
        continue;
      }
      if (inval_stop_) return;
      bool probed = false;
      bool probes_off = false;
      while (!inval_queue_.empty() && !inval_stop_) {
        Invalidation inv = std::move(inval_queue_.front());
        inval_queue_.pop_front();
        lock.unlock();
        if (SendInvalidation(inv, probes_off)) probed = true;
        lock.lock();
      }
      if (probed && !inval_stop_) {
        // Give the kernel a moment to FORGET what no process uses, then evict again (each path
        // is probed at most once per probe interval, so this ends).
        inval_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return inval_stop_; });
        if (inval_stop_) return;
        evict([&] { cache_.Evict(); }, "evicting after dropping kernel entries");
      }
    }
  });
}

bool LazyFs::KernelHolds(uint64_t id) {
  std::lock_guard lock(mu_);
  return paths_.count(id) > 0;
}

bool LazyFs::SendInvalidation(const Invalidation& inv, bool& probes_off) {
  // To drop an entry the kernel takes the root's lock (older kernels even when it has no
  // such entry), which LOOKUPs in the root hold while they wait for their fetch: an entry
  // invalidation waits for every fetch running, and new lookups in the root wait behind it.
  // So nothing is sent for a path of which the kernel holds nothing (it has no entry or inode
  // of it: most evictions, as the guard evicts only such paths above the free-space floor),
  // and a probe waits for a moment without root lookups, or is dropped when there is none
  // within 2 s (the cache probes again a probe interval later). A probed path already let go
  // of is for the eviction that follows to take.
  if (!KernelHolds(inv.id)) {
    NLS_LOG(kDebug) << (inv.probe ? "probe of /nix/store/" : "evicted /nix/store/") << inv.name
                    << ": the kernel holds nothing of it";
    return inv.probe;
  }
  if (inv.probe) {
    // Root lookups of cached paths take microseconds: wait for a moment without any, up to 2 s
    // (a fetch may take minutes), once per batch.
    std::unique_lock lock(inval_mu_);
    for (int i = 0; i < 400 && root_lookups_running_ > 0 && !inval_stop_ && !probes_off; ++i) {
      inval_cv_.wait_for(lock, std::chrono::milliseconds(5), [&] { return inval_stop_; });
    }
    if (inval_stop_) return false;
    if (root_lookups_running_ > 0) {
      probes_off = true;
      NLS_LOG(kDebug) << "eviction wants /nix/store/" << inv.name
                      << ", which the kernel holds; not dropping its entry while a lookup in "
                         "the root waits for its fetch";
      return false;
    }
  }
  int rc = fuse_lowlevel_notify_inval_entry(session_, kRootIno, inv.name.data(), inv.name.size());
  if (rc != 0 && rc != -ENOENT) {
    NLS_LOG(kDebug) << "invalidating /nix/store/" << inv.name << ": " << std::strerror(-rc);
  }
  if (inv.probe) {
    ++counters_.eviction_probes;
    NLS_LOG(kDebug) << "eviction wants /nix/store/" << inv.name
                    << ", which the kernel holds: its entry was dropped";
    return true;
  }
  fuse_lowlevel_notify_inval_inode(session_, MakeIno(inv.id, 0), 0, 0);
  ++counters_.invalidations;
  NLS_LOG(kDebug) << "evicted /nix/store/" << inv.name << ", which the kernel held";
  return false;
}

void LazyFs::StopInvalidator() {
  if (!invalidator_.joinable()) return;
  cache_.SetEvictionListener(nullptr);
  cache_.SetEvictionGuard(nullptr, nullptr);
  cache_.SetListingListener(nullptr);
  {
    std::lock_guard lock(inval_mu_);
    inval_stop_ = true;
  }
  inval_cv_.notify_all();
  invalidator_.join();
}

std::vector<Figure> LazyFs::Figures() {
  CacheStats cs = cache_.Stats();
  FetchStats fst = fetcher_.Stats();
  LazyStoreStats ls = lazy_.Stats();
  std::vector<Figure> f;
  auto gauge = [&](const char* name, uint64_t v, const char* help) {
    f.push_back({name, v, help, false});
  };
  auto counter = [&](const char* name, uint64_t v, const char* help) {
    f.push_back({name, v, help, true});
  };
  gauge("paths_cached", cs.paths, "Store paths in the local cache.");
  gauge("bytes_cached", cs.bytes_used, "Disk usage of the local cache in bytes.");
  gauge("logical_bytes_cached", cs.logical_bytes, "Sum of file sizes of cached paths.");
  gauge("chunks_cached", cs.chunks, "Distinct chunks in the local cache.");
  counter("hits", cs.hits, "Lookups answered from the local cache.");
  counter("misses", cs.misses, "Lookups not in the local cache.");
  counter("evictions", cs.evictions, "Paths evicted from the local cache.");
  counter("refetches", cs.refetches, "Paths dropped because a chunk failed verification.");
  gauge("downloads_in_flight", fst.downloads_in_flight, "NAR downloads running now.");
  counter("nar_downloads", fst.nar_downloads, "NAR downloads started.");
  counter("narinfo_requests", fst.narinfo_requests, "narinfo requests sent.");
  counter("bytes_fetched", fst.bytes_downloaded, "Compressed bytes downloaded.");
  counter("retries", fst.retries, "Retried transfers.");
  counter("paths_fetched", ls.fetched, "Store paths fetched and cached.");
  counter("paths_prefetched", ls.prefetched, "Store paths fetched by the background prefetcher.");
  counter("paths_prefetch_skipped", ls.prefetch_skipped,
          "References not prefetched because their NAR is large.");
  counter("not_found", ls.not_found, "Lookups of paths no substituter has.");
  counter("errors", fst.errors + ls.errors + counters_.io_errors.load(),
          "Errors: failed transfers, failed fetches, EIO replies.");
  counter("fetch_errors", ls.errors, "Fetches that failed (integrity, format, network).");
  counter("io_errors", counters_.io_errors.load(), "EIO replies to the kernel.");
  gauge("fetches_in_flight", ls.in_flight, "Store path fetches running now.");
  gauge("prefetch_queued", ls.prefetch_queued, "Paths waiting for the prefetcher.");
  counter("lookups", counters_.lookups.load(), "FUSE lookups.");
  counter("reads", counters_.reads.load(), "FUSE reads.");
  counter("read_bytes", counters_.read_bytes.load(), "Bytes returned by FUSE reads.");
  counter("read_bytes_spliced", counters_.read_bytes_spliced.load(),
          "Bytes of FUSE reads answered from chunk file descriptors (spliced, no copy).");
  gauge("open_files", counters_.open_files.load(),
        "Files open through the mount, where the kernel sends OPEN (0 once it skips them).");
  counter("invalidations", counters_.invalidations.load(), "Kernel entry invalidations sent.");
  counter("open_requests", counters_.open_requests.load(),
          "OPEN requests from the kernel (it stops after the first: FUSE_CAP_NO_OPEN_SUPPORT).");
  counter("opendir_requests", counters_.opendir_requests.load(),
          "OPENDIR requests from the kernel (it stops after the first: "
          "FUSE_CAP_NO_OPENDIR_SUPPORT).");
  counter("eviction_probes", counters_.eviction_probes.load(),
          "Root entries of paths in kernel use dropped so that eviction may take what is unused.");
  return f;
}

}  // namespace nls
