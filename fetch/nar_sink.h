// The receiving end of a NAR: the events a NAR parser emits, in document order.
//
// Paths are relative to the NAR's root: "" is the root itself, children are "a", "a/b", ...
// Every directory's event comes before its entries' events; entries come in the NAR's (sorted)
// order. A regular file is BeginRegular (with `contents_offset`, the offset of its first content
// byte in the uncompressed NAR, as .ls listings record it), zero or more RegularData pieces (in
// order, total equal to the announced size, each piece at most a few hundred KiB, never the whole
// file at once), then EndRegular. An implementation may throw to abort the NAR; the parser
// propagates the exception.
//
// The events of a NAR are not trustworthy until the producer has verified NarHash and NarSize:
// a sink must not make anything visible before its owner says the NAR verified.
#pragma once

#include <cstdint>
#include <string_view>

namespace nls {

class NarSink {
 public:
  virtual ~NarSink() = default;
  virtual void CreateDirectory(std::string_view path) = 0;
  virtual void BeginRegular(std::string_view path, bool executable, uint64_t size,
                            uint64_t contents_offset) = 0;
  virtual void RegularData(std::string_view data) = 0;
  virtual void EndRegular() = 0;
  virtual void CreateSymlink(std::string_view path, std::string_view target) = 0;
};

}  // namespace nls
