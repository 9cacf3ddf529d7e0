// One binary cache ("substituter") as the Fetcher sees it: its URL, how to reach files under it
// (file:// through the file system, http(s):// and s3:// through the shared HttpClient), and the
// retry delay policy. Stateless apart from the configuration; the Fetcher keeps the per-substituter
// state (nix-cache-info, failure cool-down).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fetch/http_client.h"

namespace nls {

// Delay before retry number `attempt` (1 = the retry after the first failure):
// base_s * 2^(attempt-1) * 2^jitter, with jitter in [0, 0.5) (`jitter01` in [0,1) is scaled),
// so successive delays double and concurrent clients spread out. A server's Retry-After
// (`retry_after_s` >= 0) is honoured — the delay is at least that — but capped at
// `max_retry_after_s` so a hostile or confused server cannot stall us for hours.
double RetryDelaySeconds(int attempt, double base_s, double jitter01, double retry_after_s = -1,
                         double max_retry_after_s = 10);

class Substituter {
 public:
  // Parses "file:///abs/dir", "http://host[:port]/path" or "https://...", optionally followed by
  // "?priority=N" (overrides the cache's nix-cache-info Priority, as Nix's store URLs do; other
  // query parameters are ignored). Trailing slashes are dropped.
  //
  // Also Nix's S3 store URLs, "s3://BUCKET[?region=R][&endpoint=E][&scheme=S][&profile=P]":
  // without `endpoint`, https://BUCKET.s3.R.amazonaws.com (path-style https://s3.R.amazonaws.com/
  // BUCKET for names with dots, which wildcard certificates do not cover); with it,
  // S://E/BUCKET (path-style, as S3-compatible servers such as MinIO expect; E may also be a
  // whole "http(s)://host[:port]" URL). R defaults to us-east-1, S to https. Requests are signed
  // with FindAwsCredentials(P) when it finds credentials, else sent unsigned.
  //
  // Throws ConfigError for other schemes, malformed URLs, or a named AWS profile that is missing;
  // FormatError for a malformed AWS credentials file.
  static std::unique_ptr<Substituter> Create(std::string_view url, HttpClient* http);

  // The cache root URL without query or trailing slash, as used in log lines: for s3:// the
  // HTTP(S) URL it maps to.
  const std::string& url() const { return url_; }
  bool is_file() const { return !file_root_.empty(); }
  bool is_s3() const { return !s3_region_.empty(); }
  std::optional<int> priority_override() const { return priority_override_; }
  // For s3:// substituters with credentials: where they come from (kept current); else null.
  AwsCredentialsProvider* s3_credentials() const { return s3_credentials_.get(); }
  const std::string& s3_region() const { return s3_region_; }

  // The absolute URL of `location`: itself when it has a scheme ("https://...", "file://..."),
  // else relative to the cache root (narinfo URL fields, "nar/xyz.nar.xz").
  std::string Resolve(std::string_view location) const;

  // One attempt (no retries) to read a small file (narinfo, nix-cache-info, .ls) under the cache.
  // `location` as for Resolve. A body over `max_size` bytes is kFailed.
  TransferResult GetSmall(std::string_view location, size_t max_size, std::string* body,
                          const std::atomic<bool>* cancel) const;

  // One attempt to stream the file at `location` starting at byte `offset`. For file:// the
  // handler's OnStart gets (206, offset) when offset > 0, else (200, nullopt). Handler exceptions
  // propagate; CancelledError when `cancel` becomes true.
  TransferResult Get(std::string_view location, uint64_t offset, BodyHandler& handler,
                     const std::atomic<bool>* cancel) const;

 private:
  Substituter() = default;
  // What a request for an absolute URL under this substituter's root is signed with; nullopt for
  // others and without credentials.
  std::optional<S3Signing> SigningFor(const std::string& abs) const;
  std::string url_;
  std::string file_root_;  // for file:// caches, the directory
  std::optional<int> priority_override_;
  std::string s3_region_;
  std::unique_ptr<AwsCredentialsProvider> s3_credentials_;
  HttpClient* http_ = nullptr;
};

}  // namespace nls
