#include "fetch/http_client.h"

#include <curl/curl.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "fetch/error.h"

namespace nls {
namespace {

constexpr size_t kErrorBodyKeep = 200;  // bytes of an error response kept for the message
// SHA-256 of the empty string, hex: the payload hash of an S3 GET.
const std::string kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] {
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
      throw Error(std::string("libcurl initialisation failed: ") + curl_easy_strerror(rc));
    }
  });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether a libcurl error is worth retrying.
bool IsTransientCurlError(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_AGAIN:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

TransferStatus ClassifyHttpStatus(long code) {
  if (code >= 200 && code < 300) return TransferStatus::kOk;
  if (code == 404 || code == 410 || code == 403) return TransferStatus::kNotFound;
  if (code == 408 || code == 429) return TransferStatus::kTransient;
  if (code >= 500 && code < 600 && code != 501 && code != 505) return TransferStatus::kTransient;
  return TransferStatus::kFailed;
}

struct Transfer {
  CURL* easy = nullptr;
  BodyHandler* handler = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  bool started = false;
  bool ok_status = false;
  std::optional<uint64_t> range_start;
  std::exception_ptr exception;
  uint64_t body_bytes = 0;
  std::string error_body;  // first bytes of a non-2xx body
  // Stall detection: libcurl's LOW_SPEED_* averages over a ~5 s window, too coarse for short
  // timeouts, so the progress callback aborts when dlnow has not moved for `stall_timeout`.
  std::chrono::steady_clock::duration stall_timeout{};
  std::chrono::steady_clock::time_point last_progress = std::chrono::steady_clock::now();
  curl_off_t last_dlnow = -1;
  bool stalled = false;
};

size_t HeaderCallback(char* data, size_t size, size_t nitems, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nitems;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    t->range_start.reset();  // a new response (after a redirect or 100-continue)
  } else if (line.size() > 14 && Lower(line.substr(0, 14)) == "content-range:") {
    std::string_view v = line.substr(14);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    if (Lower(v.substr(0, 6)) == "bytes ") {
      v.remove_prefix(6);
      uint64_t start = 0;
      bool any = false;
      while (!v.empty() && v.front() >= '0' && v.front() <= '9') {
        start = start * 10 + static_cast<uint64_t>(v.front() - '0');
        v.remove_prefix(1);
        any = true;
      }
      if (any && !v.empty() && v.front() == '-') t->range_start = start;
    }
  }
  return n;
}

size_t WriteCallback(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  if (!t->started) {
    t->started = true;
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    t->ok_status = code >= 200 && code < 300;
    if (t->ok_status) {
      try {
        t->handler->OnStart(code, code == 206 ? t->range_start : std::nullopt);
      } catch (...) {
        t->exception = std::current_exception();
        return 0;
      }
    }
  }
  if (!t->ok_status) {
    if (t->error_body.size() < kErrorBodyKeep) {
      t->error_body.append(data, std::min(n, kErrorBodyKeep - t->error_body.size()));
    }
    return n;
  }
  try {
    t->handler->OnData(std::string_view(data, n));
  } catch (...) {
    t->exception = std::current_exception();
    return 0;
  }
  t->body_bytes += n;
  return n;
}

int XferInfoCallback(void* user, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->cancel != nullptr && t->cancel->load(std::memory_order_relaxed)) return 1;
  auto now = std::chrono::steady_clock::now();
  if (dlnow != t->last_dlnow) {
    t->last_dlnow = dlnow;
    t->last_progress = now;
  } else if (now - t->last_progress > t->stall_timeout) {
    t->stalled = true;
    return 1;
  }
  return 0;
}

// Printable version of an error body for a log line.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

const char* TransferStatusName(TransferStatus status) {
  switch (status) {
    case TransferStatus::kOk:
      return "ok";
    case TransferStatus::kNotFound:
      return "not found";
    case TransferStatus::kTransient:
      return "transient failure";
    case TransferStatus::kFailed:
      return "failure";
  }
  return "?";
}

struct HttpClient::Impl {
  HttpClientOptions options;
  std::string ca_file;
  CURLSH* share = nullptr;
  std::mutex locks[CURL_LOCK_DATA_LAST];

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Impl*>(user)->locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Impl*>(user)->locks[data].unlock();
  }
};

HttpClient::HttpClient(const HttpClientOptions& options) : impl_(std::make_unique<Impl>()) {
  GlobalInit();
  impl_->options = options;
  impl_->ca_file = options.ssl_cert_file;
  if (impl_->ca_file.empty()) {
    for (const char* var : {"NIX_SSL_CERT_FILE", "SSL_CERT_FILE"}) {
      const char* v = std::getenv(var);
      if (v != nullptr && *v != '\0') {
        impl_->ca_file = v;
        break;
      }
    }
  }
  impl_->share = curl_share_init();
  if (impl_->share == nullptr) throw Error("libcurl: cannot create a share handle");
  curl_share_setopt(impl_->share, CURLSHOPT_LOCKFUNC, &Impl::Lock);
  curl_share_setopt(impl_->share, CURLSHOPT_UNLOCKFUNC, &Impl::Unlock);
  curl_share_setopt(impl_->share, CURLSHOPT_USERDATA, impl_.get());
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

HttpClient::~HttpClient() {
  if (impl_->share != nullptr) curl_share_cleanup(impl_->share);
}

TransferResult HttpClient::Get(const std::string& url, uint64_t range_start, BodyHandler& handler,
                               const std::atomic<bool>* cancel, const S3Signing* s3) {
  if (cancel != nullptr && cancel->load())
    throw CancelledError("download of " + url + " cancelled");
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  if (!easy) throw Error("libcurl: cannot create a handle for " + url);
  CURL* c = easy.get();
  Transfer t;
  t.easy = c;
  t.handler = &handler;
  t.cancel = cancel;
  char errbuf[CURL_ERROR_SIZE] = {0};
  const HttpClientOptions& o = impl_->options;

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_SHARE, impl_->share);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, o.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!impl_->ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, impl_->ca_file.c_str());
  if (!o.netrc_file.empty()) {
    curl_easy_setopt(c, CURLOPT_NETRC, static_cast<long>(CURL_NETRC_OPTIONAL));
    curl_easy_setopt(c, CURLOPT_NETRC_FILE, o.netrc_file.c_str());
  }
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::max(1.0, o.connect_timeout_s * 1000)));
  t.stall_timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(std::max(0.1, o.stalled_timeout_s)));
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 128L * 1024);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &XferInfoCallback);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  std::string range;
  if (range_start > 0) {
    range = std::to_string(range_start) + "-";
    curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  }
  std::string sigv4;
  std::unique_ptr<curl_slist, SlistDeleter> s3_headers;
  if (s3 != nullptr) {
    sigv4 = "aws:amz:" + s3->region + ":s3";
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(c, CURLOPT_USERNAME, s3->credentials->access_key_id.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, s3->credentials->secret_access_key.c_str());
    // S3 wants the payload's SHA-256 in this header (GET: the empty body's); libcurl signs it
    // and every other x-amz-* header.
    curl_slist* headers =
        curl_slist_append(nullptr, ("x-amz-content-sha256: " + kEmptySha256).c_str());
    s3_headers.reset(headers);
    if (headers != nullptr && !s3->credentials->session_token.empty()) {
      headers = curl_slist_append(
          headers, ("x-amz-security-token: " + s3->credentials->session_token).c_str());
    }
    if (headers == nullptr) throw Error("libcurl: out of memory for the headers of " + url);
    // libcurl would send these headers (the session token) to wherever a redirect points;
    // S3 redirects only to name the bucket's region, which the configuration must then say.
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s3_headers.get());
  }

  CURLcode rc = curl_easy_perform(c);

  if (t.exception) std::rethrow_exception(t.exception);
  if (rc == CURLE_ABORTED_BY_CALLBACK && cancel != nullptr && cancel->load()) {
    throw CancelledError("download of " + url + " cancelled");
  }
  TransferResult r;
  r.body_bytes = t.body_bytes;
  if (rc == CURLE_ABORTED_BY_CALLBACK && t.stalled) {
    r.status = TransferStatus::kTransient;
    r.error = "GET " + url + ": stalled: no data received for " +
              std::to_string(static_cast<int>(std::ceil(o.stalled_timeout_s))) + " s";
    return r;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.http_status);
  curl_off_t retry_after = -1;
  if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0) {
    r.retry_after_s = static_cast<double>(retry_after);
  }
  if (rc != CURLE_OK) {
    r.status = IsTransientCurlError(rc) ? TransferStatus::kTransient : TransferStatus::kFailed;
    std::string cause = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    while (!cause.empty() && (cause.back() == '\n' || cause.back() == ' ')) cause.pop_back();
    r.error = "GET " + url + ": " + cause;
    if (r.http_status != 0) r.error += " (HTTP " + std::to_string(r.http_status) + ")";
    return r;
  }
  r.status = ClassifyHttpStatus(r.http_status);
  if (r.status == TransferStatus::kOk) {
    if (!t.started) {
      handler.OnStart(r.http_status, r.http_status == 206 ? t.range_start : std::nullopt);
    }
  } else {
    r.error = "GET " + url + ": HTTP " + std::to_string(r.http_status);
    std::string body = Printable(t.error_body);
    if (!body.empty()) r.error += " (" + body + ")";
  }
  return r;
}

namespace {

struct TooLarge {};

class StringHandler : public BodyHandler {
 public:
  StringHandler(std::string* out, size_t max) : out_(out), max_(max) {}
  void OnStart(long, std::optional<uint64_t>) override { out_->clear(); }
  void OnData(std::string_view data) override {
    if (out_->size() + data.size() > max_) throw TooLarge{};
    out_->append(data);
  }

 private:
  std::string* out_;
  size_t max_;
};

}  // namespace

TransferResult HttpClient::GetSmall(const std::string& url, size_t max_size, std::string* body,
                                    const std::atomic<bool>* cancel, const S3Signing* s3) {
  StringHandler handler(body, max_size);
  try {
    return Get(url, 0, handler, cancel, s3);
  } catch (const TooLarge&) {
    TransferResult r;
    r.status = TransferStatus::kFailed;
    r.http_status = 200;
    r.error = "GET " + url + ": response larger than " + std::to_string(max_size) + " bytes";
    body->clear();
    return r;
  }
}

}  // namespace nls
