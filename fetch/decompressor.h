// Streaming decompression of NAR files as binary caches store them.
//
// Supported methods (the narinfo's Compression field): "none", "zstd", "xz", "bzip2".
// Memory is bounded by the codec's window (zstd: windows up to 128 MiB, zstd's default limit;
// xz: at most kXzMemoryLimit), never by the size of the stream. Concatenated streams/frames are
// decoded as one stream, as the command-line tools do.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace nls {

class Decompressor {
 public:
  using Output = std::function<void(std::string_view)>;

  static constexpr uint64_t kXzMemoryLimit = 256ULL << 20;  // xz -9 needs 65 MiB

  virtual ~Decompressor() = default;

  // Decompresses `input` (any chunking) and calls `out` with decompressed pieces (each at most
  // a few hundred KiB). Throws FormatError on corrupt input; exceptions from `out` propagate.
  virtual void Feed(std::string_view input, const Output& out) = 0;

  // Flushes; throws FormatError if the compressed stream ended early (truncated, or no stream at
  // all) or has trailing garbage.
  virtual void Finish(const Output& out) = 0;

  // Throws FormatError naming the method if it is unknown or unsupported (e.g. "br").
  static std::unique_ptr<Decompressor> Create(std::string_view method);
};

}  // namespace nls
