// A thin libcurl client for binary caches: one shared connection pool (a CURLSH sharing
// connections, DNS and TLS sessions) used by any number of threads, each transfer performed with
// curl_easy_perform on the calling thread so the body callback runs there (no extra copies, no
// buffering beyond curl's receive buffer).
//
// Behaviour: TLS peer and host verification always on (CA file: `ssl_cert_file`, else
// $NIX_SSL_CERT_FILE, else $SSL_CERT_FILE, else libcurl's default); HTTP/2 where offered over TLS;
// keep-alive; redirects followed; credentials from `netrc_file` when given; proxies from the
// environment (http_proxy, https_proxy, all_proxy, no_proxy: libcurl's default behaviour);
// connect timeout; a transfer that receives nothing for `stalled_timeout_s` (checked in the
// progress callback, about once a second or more often) is aborted as a transient failure.
// Requests to S3 buckets are signed with AWS Signature Version 4 (libcurl's CURLOPT_AWS_SIGV4)
// when given an S3Signing.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fetch/aws_credentials.h"

namespace nls {

struct HttpClientOptions {
  std::string ssl_cert_file;  // empty: environment / libcurl default
  std::string netrc_file;     // empty: no netrc
  double connect_timeout_s = 10;
  double stalled_timeout_s = 30;  // min 0.1
  std::string user_agent = "nix-lazy-store/0.1";
};

// What a transfer ended with, classified for retry decisions.
enum class TransferStatus {
  kOk,         // 2xx and the whole body received
  kNotFound,   // 404, 410, 403: "not in this cache"
  kTransient,  // connection errors, timeouts, stalls, truncated bodies, 408, 429, most 5xx: retry
  kFailed,     // anything else (TLS verification failure, 400, 401, 501, ...): do not retry
};

const char* TransferStatusName(TransferStatus status);

struct TransferResult {
  TransferStatus status = TransferStatus::kFailed;
  long http_status = 0;       // 0 when no HTTP response was received
  std::string error;          // cause, complete for a log line (names the URL); empty if ok
  double retry_after_s = -1;  // Retry-After header in seconds (HTTP-date converted), or -1
  uint64_t body_bytes = 0;    // body bytes passed to the handler in this transfer
};

// Receives a successful (2xx) response's body. Not called for error responses.
class BodyHandler {
 public:
  virtual ~BodyHandler() = default;
  // Called once before the first OnData (also for an empty body) with the final HTTP status
  // (200 or 206, ...) and, for 206, the start offset from Content-Range.
  virtual void OnStart(long http_status, std::optional<uint64_t> range_start) = 0;
  virtual void OnData(std::string_view data) = 0;
};

class HttpClient {
 public:
  explicit HttpClient(const HttpClientOptions& options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // GETs `url` (http:// or https://). With `range_start` > 0 sends "Range: bytes=N-".
  // Exceptions thrown by `handler` abort the transfer and are rethrown from here. When `cancel`
  // becomes true the transfer is aborted within about a second (usually at once) and
  // CancelledError is thrown. Never throws for network or HTTP errors: see TransferResult.
  // With `s3`, the request is signed for service "s3" in s3->region with s3->credentials
  // (headers x-amz-date, x-amz-content-sha256 of the empty body, x-amz-security-token when there
  // is a session token, and Authorization), and redirects are not followed (a 3xx is kFailed).
  TransferResult Get(const std::string& url, uint64_t range_start, BodyHandler& handler,
                     const std::atomic<bool>* cancel = nullptr, const S3Signing* s3 = nullptr);

  // Convenience for small files (narinfo, nix-cache-info, listings): the body in `*body`; a body
  // longer than `max_size` fails with kFailed.
  TransferResult GetSmall(const std::string& url, size_t max_size, std::string* body,
                          const std::atomic<bool>* cancel = nullptr, const S3Signing* s3 = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nls
