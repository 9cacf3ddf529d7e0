#include "fetch/substituter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "fetch/error.h"

namespace nls {
namespace {

constexpr size_t kFileReadChunk = 256 * 1024;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Percent-decodes a file URL's path ("%20" -> " ").
std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool HasScheme(std::string_view s) {
  size_t colon = s.find("://");
  if (colon == std::string_view::npos || colon == 0) return false;
  for (size_t i = 0; i < colon; ++i) {
    char c = s[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

TransferResult FileError(const std::string& path, int err, bool not_found_ok) {
  TransferResult r;
  r.status = (not_found_ok && (err == ENOENT || err == ENOTDIR)) ? TransferStatus::kNotFound
             : (err == EIO || err == EINTR || err == EAGAIN || err == ESTALE || err == ETIMEDOUT)
                 ? TransferStatus::kTransient
                 : TransferStatus::kFailed;
  r.error = "reading " + path + ": " + std::strerror(err);
  return r;
}

TransferResult FileGet(const std::string& path, uint64_t offset, BodyHandler& handler,
                       const std::atomic<bool>* cancel, size_t max_size) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return FileError(path, errno, true);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return FileError(path, errno, false);
  if (!S_ISREG(st.st_mode)) {
    TransferResult r;
    r.status = TransferStatus::kFailed;
    r.error = "reading " + path + ": not a regular file";
    return r;
  }
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    TransferResult r;
    r.status = TransferStatus::kFailed;
    r.error = "reading " + path + ": larger than " + std::to_string(max_size) + " bytes";
    return r;
  }
  if (offset > 0 && ::lseek(fd.get(), static_cast<off_t>(offset), SEEK_SET) < 0) {
    return FileError(path, errno, false);
  }
  handler.OnStart(offset > 0 ? 206 : 200,
                  offset > 0 ? std::optional<uint64_t>(offset) : std::nullopt);
  TransferResult r;
  r.http_status = 200;
  std::vector<char> buf(std::min<size_t>(kFileReadChunk, std::max<size_t>(max_size, 1)));
  while (true) {
    if (cancel != nullptr && cancel->load()) throw CancelledError("reading " + path + " cancelled");
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      TransferResult e = FileError(path, errno, false);
      e.body_bytes = r.body_bytes;
      return e;
    }
    if (n == 0) break;
    handler.OnData(std::string_view(buf.data(), static_cast<size_t>(n)));
    r.body_bytes += static_cast<uint64_t>(n);
  }
  r.status = TransferStatus::kOk;
  return r;
}

class StringHandler : public BodyHandler {
 public:
  explicit StringHandler(std::string* out) : out_(out) {}
  void OnStart(long, std::optional<uint64_t>) override { out_->clear(); }
  void OnData(std::string_view data) override { out_->append(data); }

 private:
  std::string* out_;
};

}  // namespace

double RetryDelaySeconds(int attempt, double base_s, double jitter01, double retry_after_s,
                         double max_retry_after_s) {
  if (attempt < 1) attempt = 1;
  double jitter = std::clamp(jitter01, 0.0, 1.0) * 0.5;
  double delay = base_s * std::pow(2.0, attempt - 1 + jitter);
  if (retry_after_s >= 0) delay = std::max(delay, std::min(retry_after_s, max_retry_after_s));
  return delay;
}

std::unique_ptr<Substituter> Substituter::Create(std::string_view url, HttpClient* http) {
  std::unique_ptr<Substituter> s(new Substituter());
  s->http_ = http;
  std::string_view base = url;
  size_t q = base.find('?');
  std::string_view query;
  if (q != std::string_view::npos) {
    query = base.substr(q + 1);
    base = base.substr(0, q);
  }
  std::string s3_region = "us-east-1", s3_endpoint, s3_scheme = "https", s3_profile;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (kv.starts_with("priority=")) {
      std::string v(kv.substr(9));
      char* end = nullptr;
      errno = 0;
      long p = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno != 0 || p < -1000000 || p > 1000000) {
        throw ConfigError("substituter '" + std::string(url) + "': invalid priority '" + v + "'");
      }
      s->priority_override_ = static_cast<int>(p);
    } else if (kv.starts_with("region=")) {
      s3_region = PercentDecode(kv.substr(7));
    } else if (kv.starts_with("endpoint=")) {
      s3_endpoint = PercentDecode(kv.substr(9));
    } else if (kv.starts_with("scheme=")) {
      s3_scheme = PercentDecode(kv.substr(7));
    } else if (kv.starts_with("profile=")) {
      s3_profile = PercentDecode(kv.substr(8));
    }
  }
  while (base.size() > 1 && base.back() == '/' && !base.ends_with("://")) base.remove_suffix(1);
  if (base.starts_with("s3://")) {
    const std::string bucket(base.substr(5));
    const auto bad = [&](const std::string& why) {
      return ConfigError("substituter " + Quoted(url) + ": " + why);
    };
    if (bucket.empty() ||
        bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != std::string::npos) {
      throw bad("an S3 URL is s3://BUCKET with a bucket name of letters, digits, '.', '-', '_'");
    }
    if (s3_scheme != "https" && s3_scheme != "http") throw bad("scheme= wants http or https");
    if (s3_region.empty() || s3_region.find_first_of("/:@?#") != std::string::npos) {
      throw bad("invalid region " + Quoted(s3_region));
    }
    if (http == nullptr) throw bad("no HTTP client");
    std::string http_base;
    if (!s3_endpoint.empty()) {
      while (s3_endpoint.ends_with('/')) s3_endpoint.pop_back();
      http_base = HasScheme(s3_endpoint) ? s3_endpoint : s3_scheme + "://" + s3_endpoint;
      if (!http_base.starts_with("http://") && !http_base.starts_with("https://")) {
        throw bad("endpoint= wants HOST[:PORT] or an http(s):// URL");
      }
      http_base += "/" + bucket;
    } else if (bucket.find('.') != std::string::npos) {
      http_base = s3_scheme + "://s3." + s3_region + ".amazonaws.com/" + bucket;
    } else {
      http_base = s3_scheme + "://" + bucket + ".s3." + s3_region + ".amazonaws.com";
    }
    s->s3_region_ = s3_region;
    s->s3_credentials_ = AwsCredentialsProvider::Create(s3_profile);
    s->url_ = std::move(http_base);
    return s;
  }
  if (base.starts_with("file://")) {
    std::string path = PercentDecode(base.substr(7));
    if (path.empty() || path[0] != '/') {
      throw ConfigError("substituter '" + std::string(url) +
                        "': a file URL needs an absolute path (file:///dir)");
    }
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    s->file_root_ = path;
  } else if (base.starts_with("http://") || base.starts_with("https://")) {
    size_t host_start = base.find("://") + 3;
    if (base.size() <= host_start || base[host_start] == '/') {
      throw ConfigError("substituter '" + std::string(url) + "': missing host name");
    }
    if (http == nullptr)
      throw ConfigError("substituter '" + std::string(url) + "': no HTTP client");
  } else {
    throw ConfigError("substituter '" + std::string(url) +
                      "': unsupported URL (supported: file:///dir, http://..., https://..., "
                      "s3://BUCKET)");
  }
  s->url_ = std::string(base);
  return s;
}

std::optional<S3Signing> Substituter::SigningFor(const std::string& abs) const {
  // Only requests under the bucket are signed: a narinfo may name a NAR elsewhere.
  if (!s3_credentials_ || !abs.starts_with(url_) || abs.size() == url_.size() ||
      abs[url_.size()] != '/')
    return std::nullopt;
  return S3Signing{s3_region_, s3_credentials_->Current()};
}

std::string Substituter::Resolve(std::string_view location) const {
  if (HasScheme(location)) return std::string(location);
  while (location.starts_with("/")) location.remove_prefix(1);
  return url_ + "/" + std::string(location);
}

TransferResult Substituter::GetSmall(std::string_view location, size_t max_size, std::string* body,
                                     const std::atomic<bool>* cancel) const {
  std::string abs = Resolve(location);
  if (abs.starts_with("file://")) {
    StringHandler handler(body);
    return FileGet(PercentDecode(abs.substr(7)), 0, handler, cancel, max_size);
  }
  if (http_ == nullptr) {
    TransferResult r;
    r.error = "cannot fetch " + abs + " from a file:// substituter without an HTTP client";
    return r;
  }
  const auto s3 = SigningFor(abs);
  return http_->GetSmall(abs, max_size, body, cancel, s3 ? &*s3 : nullptr);
}

TransferResult Substituter::Get(std::string_view location, uint64_t offset, BodyHandler& handler,
                                const std::atomic<bool>* cancel) const {
  std::string abs = Resolve(location);
  if (abs.starts_with("file://")) {
    return FileGet(PercentDecode(abs.substr(7)), offset, handler, cancel, UINT64_MAX);
  }
  if (http_ == nullptr || !(abs.starts_with("http://") || abs.starts_with("https://"))) {
    TransferResult r;
    r.error = "cannot fetch " + abs + ": unsupported URL scheme";
    return r;
  }
  const auto s3 = SigningFor(abs);
  return http_->Get(abs, offset, handler, cancel, s3 ? &*s3 : nullptr);
}

}  // namespace nls
