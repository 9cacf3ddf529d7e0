// libFuzzer target for the cache's per-path metadata format (cache/path_meta.h). A file from
// disk may be damaged: Load must reject it with an nls::Error or return a PathMeta whose every
// accessor stays in bounds. Accepted input must serialize back to an equal PathMeta.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cache/path_meta.h"
#include "fetch/error.h"

namespace {

void Walk(const nls::PathMeta& meta) {
  for (uint32_t i = 0; i < meta.node_count(); ++i) {
    const nls::PathMeta::Node& node = meta.node(i);
    (void)meta.name(i);
    switch (node.type) {
      case nls::PathMeta::Type::kDirectory:
        for (uint64_t c = 0; c < node.count; ++c) {
          const uint32_t child = static_cast<uint32_t>(node.first + c);
          if (meta.Lookup(i, meta.name(child)) != child) std::abort();
        }
        break;
      case nls::PathMeta::Type::kRegular:
        (void)meta.chunks(i);
        (void)meta.chunk_offsets(i);
        if (node.size > 0) {
          (void)meta.ChunkAt(i, 0);
          (void)meta.ChunkAt(i, node.size - 1);
        }
        break;
      case nls::PathMeta::Type::kSymlink:
        (void)meta.symlink_target(i);
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto meta = nls::PathMeta::Load(bytes);
    Walk(*meta);
    const auto again = nls::PathMeta::Load(meta->Serialize());
    if (again->node_count() != meta->node_count() ||
        again->content_bytes() != meta->content_bytes()) {
      std::abort();
    }
  } catch (const nls::Error&) {
  }
  return 0;
}
