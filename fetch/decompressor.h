// Streaming decompression of NAR files as binary caches store them.
//
// Supported methods (the narinfo's Compression field): "none", "zstd", "xz", "bzip2".
// Memory is bounded by the codec's window, never by the size of the stream.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

namespace nls {

class Decompressor {
 public:
  using Output = std::function<void(std::string_view)>;

  virtual ~Decompressor() = default;

  // Decompresses `input` (any chunking) and calls `out` with decompressed pieces.
  // Throws FormatError on corrupt input.
  virtual void Feed(std::string_view input, const Output& out) = 0;

  // Flushes; throws FormatError if the compressed stream ended early (truncated) or has
  // trailing garbage.
  virtual void Finish(const Output& out) = 0;

  // Throws FormatError naming the method if it is unknown or unsupported.
  static std::unique_ptr<Decompressor> Create(std::string_view method);
};

}  // namespace nls
