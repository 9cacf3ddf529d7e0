// Fetching store paths from binary caches ("substituters"): narinfo lookup across several
// caches by priority, signature checks, and verified, streamed NAR download into a NarSink.
//
// Thread-safe. One Fetcher per process: it owns the HTTP connection pool.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fetch/nar_sink.h"
#include "fetch/narinfo.h"
#include "fetch/signature.h"

namespace nls {

struct FetchOptions {
  std::vector<std::string> substituters;  // file:///..., http://..., https://...
  TrustedKeys trusted_keys;
  bool require_sigs = true;
  std::string store_dir = "/nix/store";
  std::string ssl_cert_file;            // empty: system default
  std::string netrc_file;               // empty: none
  double connect_timeout_s = 10;        // nix.conf connect-timeout
  double stalled_timeout_s = 30;        // nix.conf stalled-download-timeout
  int download_attempts = 5;            // nix.conf download-attempts
  double retry_base_delay_s = 0.1;      // first retry delay, doubled each time, with jitter
  double negative_ttl_s = 2;            // narinfo-cache-negative-ttl
  double failure_cooldown_s = 30;       // longest skip of a failing substituter (1 s, doubling)
  int max_parallel_downloads = 16;      // NAR downloads at once; others wait
  double max_retry_after_s = 10;        // a server's Retry-After is honoured up to this
  size_t max_cached_narinfos = 100000;  // positive narinfo cache bound (oldest dropped)
  // Also check the compressed file's SHA-256 against the narinfo's FileHash. Off by default, as
  // in Nix: FileHash is not covered by the signature (NarHash is, and is always checked), so it
  // adds no protection, only a second SHA-256 pass over every download. FileSize is always
  // checked when given (it bounds the download).
  bool check_file_hash = false;
};

// Where a path was found, and its verified narinfo.
struct PathInfo {
  NarInfo info;
  std::string substituter;  // the cache URL it came from
  std::string nar_url;      // absolute URL of the NAR file
};

struct FetchStats {
  uint64_t narinfo_requests = 0;
  uint64_t nar_downloads = 0;
  uint64_t bytes_downloaded = 0;  // compressed bytes received
  uint64_t downloads_in_flight = 0;
  uint64_t errors = 0;
  uint64_t retries = 0;
  uint64_t narinfo_cache_hits = 0;  // Query answered from the positive or negative cache
  uint64_t nar_resumes = 0;         // NAR downloads continued after an interruption
};

class Fetcher {
 public:
  static std::unique_ptr<Fetcher> Create(const FetchOptions& options);
  virtual ~Fetcher() = default;

  // Throws ConfigError for an unsupported substituter URL. Does no network I/O: each substituter's
  // nix-cache-info is read on first use (once; retried after the cool-down if it could not be
  // read). With no substituters every Query returns nullptr (our default: offline machines).
  //
  // Looks the hash part up in the substituters, lowest Priority first; the first that has it
  // wins. Returns nullptr if none has it (remembered for negative_ttl_s). A narinfo without a
  // valid trusted signature (when required) counts as absent and is logged. Throws
  // TransientError when a substituter could not be asked and no other had the path; such
  // failures are never remembered as absent.
  virtual std::shared_ptr<const PathInfo> Query(std::string_view hash_part) = 0;

  // Streams the NAR: download -> decompression -> NarParser -> sink. Returns only after NarSize,
  // NarHash (and FileSize when given; FileHash with check_file_hash) verified. Throws
  // IntegrityError / FormatError / TransientError naming the path, the substituter and the cause
  // (NotFoundError if the NAR file is missing from the cache). Retries transient failures; an
  // interrupted download resumes at the compressed offset reached (HTTP Range; a server answering
  // 200 instead of 206 has the already consumed prefix skipped), so the sink never sees an event
  // twice. When the substituter keeps failing (or lacks the NAR file), the download continues from
  // the next substituter (by priority) whose trusted narinfo has the same NarHash and NarSize,
  // skipping the NAR bytes already parsed. On any throw the sink has seen a partial, unverified NAR
  // and its owner must discard it. At most max_parallel_downloads run at once; further calls wait.
  virtual void FetchNar(const PathInfo& path, NarSink& sink) = 0;

  // Forgets what Query remembered about this hash part (positive or negative), e.g. after
  // FetchNar failed for good, so the next Query asks the substituters again.
  virtual void Invalidate(std::string_view hash_part) = 0;

  // Cancels everything in flight; later calls throw CancelledError.
  virtual void Cancel() = 0;

  virtual FetchStats Stats() = 0;
};

}  // namespace nls
