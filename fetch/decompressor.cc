#include "fetch/decompressor.h"

#include <bzlib.h>
#include <lzma.h>
#include <zstd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fetch/error.h"
#include "fetch/free_list.h"

namespace nls {
namespace {

constexpr size_t kOutBufSize = 256 * 1024;

// Decoder states (with their windows, 2-8 MiB, and output buffers) outlive a download in a
// FreeList and serve the next: reusing them avoids faulting those pages in again every time.
// At most this many of each kind, each holding at most kKeptDecoderBytes (a larger one, from an
// xz -9 or zstd --long stream, is freed): at most ~2 x 4 x 16 MiB stay allocated.
constexpr size_t kKeptDecoders = 4;
constexpr size_t kKeptDecoderBytes = 16 << 20;

struct ZstdState {
  struct Free {
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
  };
  std::unique_ptr<ZSTD_DCtx, Free> ctx;
  std::unique_ptr<char[]> buf;  // kOutBufSize bytes
};
FreeList<ZstdState>& KeptZstd() {
  static FreeList<ZstdState> kept(kKeptDecoders);
  return kept;
}

struct XzState {
  struct Stream {
    Stream() = default;
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    ~Stream() { lzma_end(&s); }
    lzma_stream s = LZMA_STREAM_INIT;
  };
  std::unique_ptr<Stream> strm;  // initialised again for each stream (reusing its memory)
  std::unique_ptr<char[]> buf;   // kOutBufSize bytes
};
FreeList<XzState>& KeptXz() {
  static FreeList<XzState> kept(kKeptDecoders);
  return kept;
}

class NoneDecompressor : public Decompressor {
 public:
  void Feed(std::string_view input, const Output& out) override {
    while (!input.empty()) {
      size_t n = std::min(input.size(), kOutBufSize);
      out(input.substr(0, n));
      input.remove_prefix(n);
    }
  }
  void Finish(const Output&) override {}
};

class ZstdDecompressor : public Decompressor {
 public:
  ZstdDecompressor() {
    if (auto kept = KeptZstd().Take()) {
      state_ = std::move(*kept);
      ZSTD_DCtx_reset(state_.ctx.get(), ZSTD_reset_session_only);
    } else {
      state_.ctx.reset(ZSTD_createDCtx());
      if (!state_.ctx) throw Error("zstd: cannot allocate a decompression context");
      state_.buf = std::make_unique_for_overwrite<char[]>(kOutBufSize);
    }
  }
  ~ZstdDecompressor() override {
    if (ZSTD_sizeof_DCtx(state_.ctx.get()) <= kKeptDecoderBytes) KeptZstd().Give(std::move(state_));
  }
  ZstdDecompressor(const ZstdDecompressor&) = delete;
  ZstdDecompressor& operator=(const ZstdDecompressor&) = delete;

  void Feed(std::string_view input, const Output& out) override {
    // Feed() leaves no output pending in the decoder (see the loop), so empty input is a no-op.
    if (input.empty()) return;
    ZSTD_inBuffer in{input.data(), input.size(), 0};
    while (true) {
      ZSTD_outBuffer o{state_.buf.get(), kOutBufSize, 0};
      size_t in_before = in.pos;
      size_t ret = ZSTD_decompressStream(state_.ctx.get(), &o, &in);
      if (ZSTD_isError(ret)) {
        throw FormatError(std::string("corrupt zstd stream: ") + ZSTD_getErrorName(ret) +
                          " (compressed byte offset about " + std::to_string(consumed_ + in.pos) +
                          ")");
      }
      // A call that made no progress says nothing new (after a finished frame it would report
      // the size of the next frame's header).
      if (in.pos != in_before || o.pos > 0) last_ret_ = ret;
      if (o.pos > 0) out(std::string_view(state_.buf.get(), o.pos));
      // Done with this input when it is consumed and nothing more is pending: either the frame
      // is complete (ret == 0) or the output buffer was not filled (a full buffer may mean more
      // output is pending inside the decoder).
      if (in.pos == in.size && (ret == 0 || o.pos < o.size)) break;
    }
    consumed_ += input.size();
  }

  void Finish(const Output&) override {
    if (consumed_ == 0) throw FormatError("truncated zstd stream: no data");
    if (last_ret_ != 0) {
      throw FormatError("truncated zstd stream: input ended inside a frame after " +
                        std::to_string(consumed_) + " bytes");
    }
  }

 private:
  ZstdState state_;
  size_t last_ret_ = 1;
  uint64_t consumed_ = 0;
};

class XzDecompressor : public Decompressor {
 public:
  XzDecompressor() {
    if (auto kept = KeptXz().Take()) {
      state_ = std::move(*kept);
    } else {
      state_.strm = std::make_unique<XzState::Stream>();
      state_.buf = std::make_unique_for_overwrite<char[]>(kOutBufSize);
    }
    // On a stream used before, liblzma reuses its memory (the dictionary) where it can.
    lzma_ret r = lzma_stream_decoder(&state_.strm->s, kXzMemoryLimit, LZMA_CONCATENATED);
    if (r != LZMA_OK)
      throw Error("xz: cannot initialise the decoder (error " + std::to_string(r) + ")");
  }
  ~XzDecompressor() override {
    if (lzma_memusage(&state_.strm->s) <= kKeptDecoderBytes) KeptXz().Give(std::move(state_));
  }
  XzDecompressor(const XzDecompressor&) = delete;
  XzDecompressor& operator=(const XzDecompressor&) = delete;

  void Feed(std::string_view input, const Output& out) override { Run(input, LZMA_RUN, out); }

  void Finish(const Output& out) override {
    if (!Run({}, LZMA_FINISH, out)) {
      throw FormatError("truncated xz stream: input ended after " +
                        std::to_string(state_.strm->s.total_in) + " bytes");
    }
  }

 private:
  // Returns true once the decoder reported the end of the (concatenated) stream.
  bool Run(std::string_view input, lzma_action action, const Output& out) {
    if (ended_) {
      if (!input.empty()) throw FormatError("xz: trailing data after the end of the stream");
      return true;
    }
    state_.strm->s.next_in = reinterpret_cast<const uint8_t*>(input.data());
    state_.strm->s.avail_in = input.size();
    while (true) {
      state_.strm->s.next_out = reinterpret_cast<uint8_t*>(state_.buf.get());
      state_.strm->s.avail_out = kOutBufSize;
      lzma_ret r = lzma_code(&state_.strm->s, action);
      size_t produced = kOutBufSize - state_.strm->s.avail_out;
      if (produced > 0) out(std::string_view(state_.buf.get(), produced));
      if (r == LZMA_STREAM_END) {
        ended_ = true;
        return true;
      }
      if (r == LZMA_BUF_ERROR && action == LZMA_FINISH) return false;
      if (r != LZMA_OK) throw FormatError(Describe(r));
      if (action == LZMA_RUN && state_.strm->s.avail_in == 0 && state_.strm->s.avail_out != 0)
        return false;
    }
  }

  std::string Describe(lzma_ret r) const {
    std::string where =
        " (compressed byte offset about " + std::to_string(state_.strm->s.total_in) + ")";
    switch (r) {
      case LZMA_FORMAT_ERROR:
        return "corrupt xz stream: not in xz format" + where;
      case LZMA_DATA_ERROR:
        return "corrupt xz stream: data error" + where;
      case LZMA_OPTIONS_ERROR:
        return "corrupt xz stream: unsupported options" + where;
      case LZMA_MEMLIMIT_ERROR:
        return "xz stream needs more than " + std::to_string(kXzMemoryLimit >> 20) +
               " MiB of memory to decode" + where;
      case LZMA_MEM_ERROR:
        return "xz: out of memory" + where;
      default:
        return "corrupt xz stream: error " + std::to_string(r) + where;
    }
  }

  XzState state_;
  bool ended_ = false;
};

class Bzip2Decompressor : public Decompressor {
 public:
  Bzip2Decompressor() : buf_(kOutBufSize) {}
  ~Bzip2Decompressor() override {
    if (active_) BZ2_bzDecompressEnd(&strm_);
  }
  Bzip2Decompressor(const Bzip2Decompressor&) = delete;
  Bzip2Decompressor& operator=(const Bzip2Decompressor&) = delete;

  void Feed(std::string_view input, const Output& out) override {
    size_t pos = 0;
    while (pos < input.size()) {
      if (!active_) {
        int r = BZ2_bzDecompressInit(&strm_, 0, 0);
        if (r != BZ_OK)
          throw Error("bzip2: cannot initialise the decoder (error " + std::to_string(r) + ")");
        active_ = true;
        in_stream_ = true;
      }
      strm_.next_in = const_cast<char*>(input.data() + pos);
      strm_.avail_in = static_cast<unsigned>(std::min<size_t>(input.size() - pos, 1u << 30));
      const size_t before = strm_.avail_in;
      // At a stream's end another may follow (like `bzip2 -d`): the loop starts afresh on the
      // remaining input.
      Step(out, [&] {
        pos += before - strm_.avail_in;
        consumed_ += before - strm_.avail_in;
      });
    }
    // Drain output still held by the decoder (avail_in == 0 but a full output buffer).
    while (active_ && strm_.avail_out == 0) Step(out, [] {});
  }

  void Finish(const Output& out) override {
    Feed({}, out);
    if (in_stream_ || streams_ == 0) {
      throw FormatError("truncated bzip2 stream: input ended after " + std::to_string(consumed_) +
                        " bytes");
    }
  }

 private:
  // One BZ2_bzDecompress call into buf_: emits what it produced, closes the decoder at the end of
  // a stream, throws on corrupt input. `account` runs right after the call (input bookkeeping).
  template <typename Account>
  void Step(const Output& out, Account account) {
    strm_.next_out = buf_.data();
    strm_.avail_out = static_cast<unsigned>(buf_.size());
    const int r = BZ2_bzDecompress(&strm_);
    account();
    const size_t produced = buf_.size() - strm_.avail_out;
    if (produced > 0) out(std::string_view(buf_.data(), produced));
    if (r == BZ_STREAM_END) {
      BZ2_bzDecompressEnd(&strm_);
      active_ = false;
      in_stream_ = false;
      streams_++;
    } else if (r != BZ_OK) {
      throw FormatError("corrupt bzip2 stream (error " + std::to_string(r) +
                        ", compressed byte offset about " + std::to_string(consumed_) + ")");
    }
  }

  bz_stream strm_{};
  std::vector<char> buf_;
  bool active_ = false;
  bool in_stream_ = false;
  int streams_ = 0;
  uint64_t consumed_ = 0;
};

}  // namespace

std::unique_ptr<Decompressor> Decompressor::Create(std::string_view method) {
  if (method == "none") return std::make_unique<NoneDecompressor>();
  if (method == "zstd") return std::make_unique<ZstdDecompressor>();
  if (method == "xz") return std::make_unique<XzDecompressor>();
  if (method == "bzip2") return std::make_unique<Bzip2Decompressor>();
  throw FormatError("unsupported compression method '" + std::string(method) +
                    "' (supported: none, zstd, xz, bzip2)");
}

}  // namespace nls
