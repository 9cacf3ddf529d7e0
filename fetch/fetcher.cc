#include "fetch/fetcher.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <unordered_map>

#include "fetch/cache_info.h"
#include "fetch/decompressor.h"
#include "fetch/error.h"
#include "fetch/hash.h"
#include "fetch/http_client.h"
#include "fetch/log.h"
#include "fetch/nar_parser.h"
#include "fetch/store_path.h"
#include "fetch/substituter.h"

namespace nls {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxNarInfoSize = 1 << 20;
constexpr size_t kMaxCacheInfoSize = 64 << 10;
constexpr size_t kMaxNegativeEntries = 100000;
constexpr double kFirstCooldownS = 1;  // see MarkFailure

double Jitter01() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Per-substituter state: nix-cache-info (read once) and the failure cool-down.
struct SubState {
  std::unique_ptr<Substituter> sub;
  std::mutex mu;
  bool initialized = false;
  bool disabled = false;
  int priority = 50;
  Clock::time_point cooldown_until{};
  int failures = 0;  // cool-downs in a row, without an answer in between
};

enum class Availability { kUsable, kDisabled, kUnavailable };

// Compressed bytes -> FileSize (and optional FileHash) check -> decompressor -> NarParser -> sink.
//
// The parser (and so the sink) lives for the whole FetchNar; the "source" (one NAR file of one
// substituter: decompressor, FileHash state) can be replaced when a download has to continue from
// another substituter. NarHash equality guarantees that every source decompresses to the same
// NAR, so a new source skips the uncompressed bytes the parser has already consumed.
class NarPipeline {
 public:
  NarPipeline(NarSink& sink, bool check_file_hash)
      : parser_(sink), check_file_hash_(check_file_hash) {}

  // Starts reading `info`'s NAR file from the beginning; `origin` names path, URL and substituter.
  void StartSource(const NarInfo& info, std::string origin) {
    info_ = &info;
    origin_ = std::move(origin);
    decompressor_ = Decompressor::Create(info.compression);
    file_hasher_ = std::make_unique<Sha256>();
    compressed_ = 0;
    skip_ = parser_.bytes_consumed();
  }

  uint64_t compressed_bytes() const { return compressed_; }
  uint64_t nar_bytes() const { return parser_.bytes_consumed(); }

  void Feed(std::string_view data) {
    compressed_ += data.size();
    if (info_->file_size && compressed_ > *info_->file_size) {
      throw IntegrityError(origin_ + ": the NAR file is larger than its FileSize " +
                           std::to_string(*info_->file_size));
    }
    if (check_file_hash_ && info_->file_hash) file_hasher_->Update(data);
    Wrap([&] { decompressor_->Feed(data, Out()); });
  }

  void Finish() {
    Wrap([&] { decompressor_->Finish(Out()); });
    if (info_->file_size && compressed_ != *info_->file_size) {
      throw IntegrityError(origin_ + ": FileSize mismatch: expected " +
                           std::to_string(*info_->file_size) + " bytes, got " +
                           std::to_string(compressed_));
    }
    if (check_file_hash_ && info_->file_hash) {
      Hash got = file_hasher_->Finish();
      if (got != *info_->file_hash) {
        throw IntegrityError(origin_ + ": FileHash mismatch: expected " +
                             info_->file_hash->ToNixString() + ", got " + got.ToNixString());
      }
    }
    Wrap([&] { parser_.Finish(info_->nar_size, info_->nar_hash); });
  }

 private:
  Decompressor::Output Out() {
    return [this](std::string_view piece) {
      if (skip_ > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, piece.size()));
        skip_ -= n;
        piece.remove_prefix(n);
        if (piece.empty()) return;
      }
      parser_.Feed(piece);
    };
  }

  // Makes sure decoder/parser errors name the path, the NAR URL and the substituter.
  template <typename F>
  void Wrap(F f) {
    try {
      f();
    } catch (const FormatError& e) {
      if (std::string_view(e.what()).find(origin_) != std::string_view::npos) throw;
      throw FormatError(origin_ + ": " + e.what());
    } catch (const IntegrityError& e) {
      if (std::string_view(e.what()).find(origin_) != std::string_view::npos) throw;
      throw IntegrityError(origin_ + ": " + e.what());
    }
  }

  NarParser parser_;
  const bool check_file_hash_;
  const NarInfo* info_ = nullptr;
  std::string origin_;
  std::unique_ptr<Decompressor> decompressor_;
  std::unique_ptr<Sha256> file_hasher_;
  uint64_t compressed_ = 0;
  uint64_t skip_ = 0;  // uncompressed bytes still to drop (a replacement source's prefix)
};

// Feeds one transfer attempt into the pipeline, skipping a prefix the server re-sent.
class ResumingHandler : public BodyHandler {
 public:
  ResumingHandler(NarPipeline& pipe, const std::string& origin)
      : pipe_(pipe), origin_(origin), offset_(pipe.compressed_bytes()) {}

  void OnStart(long status, std::optional<uint64_t> range_start) override {
    skip_ = 0;
    if (offset_ == 0) return;
    if (status == 206 && range_start == offset_) return;
    if (status == 200) {
      skip_ = offset_;  // the server ignored the Range request: drop what we already have
      NLS_LOG(kDebug) << origin_ << ": server ignored the Range request, skipping " << offset_
                      << " bytes";
      return;
    }
    throw TransientError(origin_ + ": resuming at byte " + std::to_string(offset_) +
                         " failed: unexpected HTTP " + std::to_string(status) +
                         " with Content-Range start " +
                         (range_start ? std::to_string(*range_start) : std::string("(none)")));
  }

  void OnData(std::string_view data) override {
    received_ += data.size();
    if (skip_ > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, data.size()));
      skip_ -= n;
      data.remove_prefix(n);
      if (data.empty()) return;
    }
    pipe_.Feed(data);
  }

  uint64_t received() const { return received_; }

 private:
  NarPipeline& pipe_;
  const std::string& origin_;
  uint64_t offset_;
  uint64_t skip_ = 0;
  uint64_t received_ = 0;
};

class FetcherImpl : public Fetcher {
 public:
  explicit FetcherImpl(const FetchOptions& options) : opt_(options) {
    HttpClientOptions h;
    h.ssl_cert_file = opt_.ssl_cert_file;
    h.netrc_file = opt_.netrc_file;
    h.connect_timeout_s = opt_.connect_timeout_s;
    h.stalled_timeout_s = opt_.stalled_timeout_s;
    if (opt_.download_attempts < 1) opt_.download_attempts = 1;
    if (opt_.max_parallel_downloads < 1) opt_.max_parallel_downloads = 1;
    http_ = std::make_unique<HttpClient>(h);
    for (const std::string& url : opt_.substituters) {
      auto sub = Substituter::Create(url, http_.get());
      bool dup = false;
      for (const auto& s : subs_) dup = dup || s->sub->url() == sub->url();
      if (dup) {
        // E.g. one bucket twice with different profiles: only the first is used.
        NLS_LOG(kWarn) << "substituter " << url << " is " << sub->url()
                       << ", as an earlier one is: ignored";
        continue;
      }
      if (sub->is_s3()) {
        if (AwsCredentialsProvider* creds = sub->s3_credentials()) {
          NLS_LOG(kInfo) << "substituter " << url << " (" << sub->url()
                         << "): requests signed for region " << sub->s3_region()
                         << " with credentials from " << creds->Current()->source;
        } else {
          NLS_LOG(kInfo) << "substituter " << url << " (" << sub->url()
                         << "): no AWS credentials found, requests go unsigned";
        }
      }
      auto state = std::make_unique<SubState>();
      state->sub = std::move(sub);
      subs_.push_back(std::move(state));
    }
    if (subs_.empty()) {
      NLS_LOG(kInfo) << "no substituters configured: every store path lookup will miss";
    } else if (opt_.require_sigs && opt_.trusted_keys.empty()) {
      NLS_LOG(kWarn) << "signatures are required but no trusted-public-keys are configured: "
                        "every path from the substituters will be rejected";
    }
  }

  ~FetcherImpl() override { Cancel(); }

  std::shared_ptr<const PathInfo> Query(std::string_view hash_part_view) override {
    CheckCancelled();
    std::string hash_part(hash_part_view);
    if (!StorePath::IsValidHashPart(hash_part)) {
      NLS_LOG(kDebug) << "not a store path hash part: '" << hash_part << "'";
      return nullptr;
    }
    std::promise<std::shared_ptr<const PathInfo>> promise;
    std::shared_future<std::shared_ptr<const PathInfo>> future;
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (auto it = positive_.find(hash_part); it != positive_.end()) {
        ++cache_hits_;
        return it->second;
      }
      if (auto it = negative_.find(hash_part); it != negative_.end()) {
        if (Clock::now() < it->second) {
          ++cache_hits_;
          return nullptr;
        }
        negative_.erase(it);
      }
      if (auto it = inflight_.find(hash_part); it != inflight_.end()) {
        future = it->second;
      } else {
        inflight_[hash_part] = promise.get_future().share();
      }
    }
    if (future.valid()) return future.get();  // another thread asks already

    std::shared_ptr<const PathInfo> result;
    try {
      result = DoQuery(hash_part);
    } catch (...) {
      {
        std::lock_guard<std::mutex> lock(cache_mu_);
        inflight_.erase(hash_part);
      }
      promise.set_exception(std::current_exception());
      throw;
    }
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (result) {
        if (positive_.emplace(hash_part, result).second) positive_order_.push_back(hash_part);
        while (positive_order_.size() > std::max<size_t>(opt_.max_cached_narinfos, 1)) {
          positive_.erase(positive_order_.front());
          positive_order_.pop_front();
        }
      } else if (opt_.negative_ttl_s > 0) {
        if (negative_.size() >= kMaxNegativeEntries) {
          auto now = Clock::now();
          std::erase_if(negative_, [&](const auto& kv) { return kv.second <= now; });
          if (negative_.size() >= kMaxNegativeEntries) negative_.clear();
        }
        negative_[hash_part] =
            Clock::now() + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(opt_.negative_ttl_s));
      }
      inflight_.erase(hash_part);
    }
    promise.set_value(result);
    return result;
  }

  void FetchNar(const PathInfo& path, NarSink& sink) override {
    CheckCancelled();
    SubState* state = nullptr;
    for (const auto& s : subs_) {
      if (s->sub->url() == path.substituter) state = s.get();
    }
    if (state == nullptr) {
      throw ConfigError("cannot fetch " + path.info.store_path.FullPath(opt_.store_dir) +
                        ": substituter '" + path.substituter + "' is not configured");
    }
    const std::string full = path.info.store_path.FullPath(opt_.store_dir);

    Slot slot(*this);
    ++nar_downloads_;
    auto started = Clock::now();
    NarPipeline pipe(sink, opt_.check_file_hash);
    // The current source; replaced by another substituter's copy of the same NAR when this one
    // keeps failing.
    std::shared_ptr<const PathInfo> source = std::make_shared<PathInfo>(path);
    std::vector<SubState*> tried{state};
    while (true) {
      std::string error;
      bool not_found = false;
      if (DownloadFrom(*state, *source, full, pipe, &error, &not_found)) break;
      auto next = FindAlternative(path.info, full, &tried);
      if (!next.first) {
        ++errors_;
        NLS_LOG(kError) << error;
        if (not_found) throw NotFoundError(error);
        throw TransientError(error);
      }
      NLS_LOG(kWarn) << error << "; continuing from substituter " << next.first->sub->url()
                     << " at NAR byte " << pipe.nar_bytes();
      state = next.first;
      source = next.second;
    }
    try {
      pipe.Finish();
    } catch (const std::exception& e) {
      ++errors_;
      NLS_LOG(kError) << "fetching " << full << " from " << state->sub->url()
                      << " failed: " << e.what();
      throw;
    }
    double secs = std::chrono::duration<double>(Clock::now() - started).count();
    NLS_LOG(kDebug) << "fetched " << full << " from " << state->sub->url() << ": "
                    << pipe.compressed_bytes() << " bytes in " << secs << " s";
  }

  void Invalidate(std::string_view hash_part) override {
    std::string h(hash_part);
    std::lock_guard<std::mutex> lock(cache_mu_);
    negative_.erase(h);
    if (positive_.erase(h) > 0) {
      positive_order_.erase(std::find(positive_order_.begin(), positive_order_.end(), h));
    }
  }

  void Cancel() override {
    cancelled_ = true;
    { std::lock_guard<std::mutex> lock(sleep_mu_); }
    sleep_cv_.notify_all();
    { std::lock_guard<std::mutex> lock(slots_mu_); }
    slots_cv_.notify_all();
  }

  FetchStats Stats() override {
    FetchStats s;
    s.narinfo_requests = narinfo_requests_;
    s.nar_downloads = nar_downloads_;
    s.bytes_downloaded = bytes_downloaded_;
    s.downloads_in_flight = in_flight_;
    s.errors = errors_;
    s.retries = retries_;
    s.narinfo_cache_hits = cache_hits_;
    s.nar_resumes = nar_resumes_;
    return s;
  }

 private:
  // Holds one of max_parallel_downloads download slots.
  class Slot {
   public:
    explicit Slot(FetcherImpl& f) : f_(f) {
      std::unique_lock<std::mutex> lock(f_.slots_mu_);
      f_.slots_cv_.wait(lock, [&] {
        return f_.cancelled_.load() ||
               f_.in_flight_.load() < static_cast<uint64_t>(f_.opt_.max_parallel_downloads);
      });
      if (f_.cancelled_) throw CancelledError("fetching cancelled (shutting down)");
      ++f_.in_flight_;
    }
    ~Slot() {
      {
        std::lock_guard<std::mutex> lock(f_.slots_mu_);
        --f_.in_flight_;
      }
      f_.slots_cv_.notify_one();
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    FetcherImpl& f_;
  };

  // Streams `source`'s NAR file from `st` into `pipe` (starting a new source in the pipeline),
  // retrying transient failures and resuming where the previous attempt stopped. Returns true
  // when the whole file went through; false with `*error` (naming path, substituter and cause)
  // when this substituter failed for good. Integrity/format errors and sink errors are thrown.
  bool DownloadFrom(SubState& st, const PathInfo& source, const std::string& full,
                    NarPipeline& pipe, std::string* error, bool* not_found) {
    const Substituter& sub = *st.sub;
    const std::string origin =
        full + " (" + source.nar_url + " from substituter " + sub.url() + ")";
    pipe.StartSource(source.info, origin);
    for (int attempt = 1;; ++attempt) {
      CheckCancelled();
      ResumingHandler handler(pipe, origin);
      TransferResult r;
      try {
        r = sub.Get(source.nar_url, pipe.compressed_bytes(), handler, &cancelled_);
      } catch (const CancelledError&) {
        bytes_downloaded_ += handler.received();
        throw;
      } catch (const std::exception& e) {
        bytes_downloaded_ += handler.received();
        ++errors_;
        NLS_LOG(kError) << "fetching " << full << " from " << sub.url() << " failed: " << e.what();
        throw;
      }
      bytes_downloaded_ += handler.received();
      if (r.status == TransferStatus::kOk || r.status == TransferStatus::kNotFound) {
        MarkAnswered(st);
      }
      if (r.status == TransferStatus::kOk) return true;
      if (r.status == TransferStatus::kNotFound) {
        *not_found = true;
        *error = "fetching " + full + " from " + sub.url() +
                 ": the narinfo exists but its NAR file does not: " + r.error;
        return false;
      }
      if (r.status == TransferStatus::kFailed || attempt >= opt_.download_attempts) {
        *not_found = false;
        *error = "fetching " + full + " from " + sub.url() + " failed after " +
                 std::to_string(attempt) + " attempt(s), " +
                 std::to_string(pipe.compressed_bytes()) + " bytes received: " + r.error;
        MarkFailure(st, r.error);
        return false;
      }
      double delay = RetryDelaySeconds(attempt, opt_.retry_base_delay_s, Jitter01(),
                                       r.retry_after_s, opt_.max_retry_after_s);
      ++retries_;
      if (pipe.compressed_bytes() > 0) ++nar_resumes_;
      NLS_LOG(kWarn) << "fetching " << full << " from " << sub.url() << ": " << r.error
                     << "; retrying from byte " << pipe.compressed_bytes() << " in "
                     << static_cast<int>(delay * 1000) << " ms (attempt " << attempt + 1 << " of "
                     << opt_.download_attempts << ")";
      SleepCancellable(delay);
    }
  }

  // Another substituter (by priority, not yet tried, usable) whose valid, trusted narinfo for
  // the same path promises the same NAR (NarHash and NarSize). Adds it to `tried`.
  std::pair<SubState*, std::shared_ptr<const PathInfo>> FindAlternative(
      const NarInfo& wanted, const std::string& full, std::vector<SubState*>* tried) {
    std::vector<SubState*> order;
    for (const auto& s : subs_) {
      if (std::find(tried->begin(), tried->end(), s.get()) != tried->end()) continue;
      if (EnsureInitialized(*s) == Availability::kUsable) order.push_back(s.get());
    }
    std::stable_sort(order.begin(), order.end(), [](const SubState* a, const SubState* b) {
      return a->priority < b->priority;
    });
    std::string hash_part(wanted.store_path.hash_part());
    for (SubState* s : order) {
      tried->push_back(s);
      std::shared_ptr<const PathInfo> info = AskOne(*s, hash_part);
      if (!info) continue;
      if (info->info.nar_hash != wanted.nar_hash || info->info.nar_size != wanted.nar_size) {
        NLS_LOG(kWarn) << "substituter " << s->sub->url() << " has a different NAR for " << full
                       << " (NarHash " << info->info.nar_hash.ToNixString() << ", expected "
                       << wanted.nar_hash.ToNixString() << "); not using it";
        continue;
      }
      return {s, info};
    }
    return {nullptr, nullptr};
  }

  void CheckCancelled() const {
    if (cancelled_) throw CancelledError("fetching cancelled (shutting down)");
  }

  void SleepCancellable(double seconds) {
    std::unique_lock<std::mutex> lock(sleep_mu_);
    sleep_cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                       [&] { return cancelled_.load(); });
    CheckCancelled();
  }

  // Retries transient failures of `attempt` with backoff; returns the last result.
  template <typename F>
  TransferResult WithRetries(const Substituter& sub, const std::string& what, F attempt) {
    for (int n = 1;; ++n) {
      CheckCancelled();
      TransferResult r = attempt();
      if (r.status != TransferStatus::kTransient || n >= opt_.download_attempts) return r;
      double delay = RetryDelaySeconds(n, opt_.retry_base_delay_s, Jitter01(), r.retry_after_s,
                                       opt_.max_retry_after_s);
      ++retries_;
      NLS_LOG(kInfo) << what << " from " << sub.url() << ": " << r.error << "; retrying in "
                     << static_cast<int>(delay * 1000) << " ms (attempt " << n + 1 << " of "
                     << opt_.download_attempts << ")";
      SleepCancellable(delay);
    }
  }

  // The substituter could not be asked: skip it for a while. The first cool-down is short
  // (kFirstCooldownS) and each one after it, without an answer in between, doubles, up to
  // failure_cooldown_s: a server back after a restart is used again within seconds, a dead one
  // is tried once per failure_cooldown_s.
  void MarkFailure(SubState& s, const std::string& cause) {
    if (opt_.failure_cooldown_s <= 0) return;
    auto now = Clock::now();
    std::lock_guard<std::mutex> lock(cooldown_mu_);
    if (s.cooldown_until > now) return;
    const double secs = std::min(opt_.failure_cooldown_s,
                                 kFirstCooldownS * std::pow(2.0, std::min(s.failures, 30)));
    ++s.failures;
    s.cooldown_until =
        now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(secs));
    NLS_LOG(kWarn) << "substituter " << s.sub->url() << " keeps failing (" << cause
                   << "); skipping it for " << secs << " s";
  }

  // The substituter answered (found or not): the next failure starts a short cool-down again.
  void MarkAnswered(SubState& s) {
    std::lock_guard<std::mutex> lock(cooldown_mu_);
    s.failures = 0;
  }

  bool InCooldown(SubState& s) {
    std::lock_guard<std::mutex> lock(cooldown_mu_);
    return s.cooldown_until > Clock::now();
  }

  // Reads nix-cache-info once.
  Availability EnsureInitialized(SubState& s) {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.disabled) return Availability::kDisabled;
    if (InCooldown(s)) return Availability::kUnavailable;
    if (s.initialized) return Availability::kUsable;
    const Substituter& sub = *s.sub;
    std::string body;
    TransferResult r = WithRetries(sub, "reading nix-cache-info", [&] {
      return sub.GetSmall("nix-cache-info", kMaxCacheInfoSize, &body, &cancelled_);
    });
    if (r.status == TransferStatus::kOk) MarkAnswered(s);
    CacheInfo info;
    if (r.status == TransferStatus::kOk) {
      try {
        info = CacheInfo::Parse(body, sub.Resolve("nix-cache-info"));
      } catch (const FormatError& e) {
        s.disabled = true;
        NLS_LOG(kError) << "substituter " << sub.url() << " disabled: " << e.what();
        return Availability::kDisabled;
      }
      if (info.store_dir != opt_.store_dir) {
        s.disabled = true;
        NLS_LOG(kError) << "substituter " << sub.url() << " disabled: its StoreDir '"
                        << info.store_dir << "' is not ours ('" << opt_.store_dir << "')";
        return Availability::kDisabled;
      }
    } else if (r.http_status == 403 && sub.is_s3()) {
      // A bucket says 403 to wrong or not yet rotated keys: try again after the cool-down.
      ++errors_;
      NLS_LOG(kWarn) << "substituter " << sub.url() << ": cannot read nix-cache-info (check the "
                     << "AWS credentials and the region): " << r.error;
      MarkFailure(s, r.error);
      return Availability::kUnavailable;
    } else if (r.status == TransferStatus::kNotFound) {
      if (!sub.is_file()) {
        s.disabled = true;
        NLS_LOG(kError) << "substituter " << sub.url()
                        << " disabled: not a binary cache (no nix-cache-info: " << r.error << ")";
        return Availability::kDisabled;
      }
      NLS_LOG(kInfo) << "substituter " << sub.url() << " has no nix-cache-info; assuming StoreDir "
                     << opt_.store_dir << " and Priority 50";
    } else {
      ++errors_;
      NLS_LOG(kWarn) << "substituter " << sub.url() << ": cannot read nix-cache-info: " << r.error;
      MarkFailure(s, r.error);
      return Availability::kUnavailable;
    }
    s.priority = sub.priority_override().value_or(info.priority);
    s.initialized = true;
    NLS_LOG(kDebug) << "substituter " << sub.url() << ": priority " << s.priority;
    return Availability::kUsable;
  }

  // Asks one substituter for a narinfo (with retries). Returns the verified PathInfo, or nullptr
  // when it does not have a valid, trusted one. Sets `*failure` (when given) to the cause if the
  // substituter could not be asked.
  std::shared_ptr<const PathInfo> AskOne(SubState& s, const std::string& hash_part,
                                         std::string* failure = nullptr) {
    const Substituter& sub = *s.sub;
    std::string location = hash_part + ".narinfo";
    std::string body;
    TransferResult r = WithRetries(sub, "looking up " + location, [&] {
      ++narinfo_requests_;
      return sub.GetSmall(location, kMaxNarInfoSize, &body, &cancelled_);
    });
    if (r.status == TransferStatus::kOk || r.status == TransferStatus::kNotFound) MarkAnswered(s);
    if (r.status == TransferStatus::kNotFound) {
      NLS_LOG(kDebug) << hash_part << " not in " << sub.url();
      return nullptr;
    }
    if (r.status != TransferStatus::kOk) {
      ++errors_;
      NLS_LOG(kWarn) << "cannot look up store path hash " << hash_part << " in " << sub.url()
                     << ": " << r.error;
      MarkFailure(s, r.error);
      if (failure != nullptr) *failure = r.error;
      return nullptr;
    }
    std::string origin = sub.Resolve(location);
    NarInfo info;
    try {
      info = NarInfo::Parse(body, origin, hash_part, opt_.store_dir);
    } catch (const FormatError& e) {
      ++errors_;
      NLS_LOG(kWarn) << "ignoring store path hash " << hash_part << " from " << sub.url()
                     << ": invalid narinfo: " << e.what();
      return nullptr;
    }
    std::string full = info.store_path.FullPath(opt_.store_dir);
    if (opt_.require_sigs && !opt_.trusted_keys.Verifies(info, opt_.store_dir)) {
      ++errors_;
      std::string names;
      for (const std::string& sig : info.sigs) {
        names += (names.empty() ? "" : ", ") + sig.substr(0, sig.find(':'));
      }
      NLS_LOG(kWarn) << "ignoring " << full << " from " << sub.url()
                     << ": no valid signature from a trusted key (signed by: "
                     << (names.empty() ? "nobody" : names) << ")";
      return nullptr;
    }
    auto result = std::make_shared<PathInfo>();
    result->nar_url = sub.Resolve(info.url);
    result->info = std::move(info);
    result->substituter = sub.url();
    NLS_LOG(kDebug) << "found " << full << " in " << sub.url();
    return result;
  }

  std::shared_ptr<const PathInfo> DoQuery(const std::string& hash_part) {
    std::vector<SubState*> order;
    std::string unavailable;
    for (const auto& s : subs_) {
      switch (EnsureInitialized(*s)) {
        case Availability::kUsable:
          order.push_back(s.get());
          break;
        case Availability::kDisabled:
          break;
        case Availability::kUnavailable:
          unavailable += (unavailable.empty() ? "" : "; ") + s->sub->url() + " is unavailable";
          break;
      }
    }
    std::stable_sort(order.begin(), order.end(), [](const SubState* a, const SubState* b) {
      return a->priority < b->priority;
    });
    for (SubState* s : order) {
      std::string failure;
      if (auto result = AskOne(*s, hash_part, &failure)) return result;
      if (!failure.empty()) unavailable += (unavailable.empty() ? "" : "; ") + failure;
    }
    if (!unavailable.empty()) {
      throw TransientError("cannot look up store path hash " + hash_part +
                           ": no substituter had it and some could not be asked: " + unavailable);
    }
    return nullptr;
  }

  FetchOptions opt_;
  std::unique_ptr<HttpClient> http_;
  std::vector<std::unique_ptr<SubState>> subs_;
  std::atomic<bool> cancelled_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  std::mutex cooldown_mu_;

  std::mutex cache_mu_;
  std::unordered_map<std::string, std::shared_ptr<const PathInfo>> positive_;
  std::deque<std::string> positive_order_;
  std::unordered_map<std::string, Clock::time_point> negative_;
  std::unordered_map<std::string, std::shared_future<std::shared_ptr<const PathInfo>>> inflight_;

  std::mutex slots_mu_;
  std::condition_variable slots_cv_;

  std::atomic<uint64_t> narinfo_requests_{0}, nar_downloads_{0}, bytes_downloaded_{0},
      in_flight_{0}, errors_{0}, retries_{0}, cache_hits_{0}, nar_resumes_{0};
};

}  // namespace

std::unique_ptr<Fetcher> Fetcher::Create(const FetchOptions& options) {
  return std::make_unique<FetcherImpl>(options);
}

}  // namespace nls
