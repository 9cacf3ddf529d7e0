// fetch_tool: drives the Fetcher from the command line (integration tests, benchmarks).
//
//   fetch_tool [options] PATH... OUTDIR
// PATH is a store path hash part, base name or full store path. With one PATH (and no
// --closure) its tree is materialized at OUTDIR; otherwise each path goes to OUTDIR/<base name>.
// Trees are written to a temporary name and renamed into place only after the NAR verified, so a
// failed fetch leaves nothing behind. Regular files get mode 0444/0555, directories 0755.
// Options:
//   --substituter URL (repeatable)   --trusted-public-key KEY (repeatable)   --no-require-sigs
//   --nix-conf FILE (applied first; command-line options override it)
//   --stalled-timeout S  --connect-timeout S  --attempts N  --negative-ttl S  --jobs N
//   --closure (also fetch every reference, recursively, up to --jobs in parallel)
//   --log-level error|warn|info|debug   --stats (print one JSON line of totals to stdout)
// Prints "fetched <full store path> <NarSize>" per path. Exit status: 0 ok, 3 a path was not
// found (also when its narinfo was rejected: bad signature, invalid narinfo), 4 integrity, format
// or signature error, 5 transient failure (network, server errors), 2 usage/configuration error,
// 1 other errors. With several failures the highest status wins.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fetch/error.h"
#include "fetch/fetcher.h"
#include "fetch/log.h"
#include "fetch/nix_conf.h"
#include "fetch/signature.h"
#include "fetch/store_path.h"

namespace {

using namespace nls;

// Writes a NAR's tree under `root` (which must not exist).
class FsSink : public NarSink {
 public:
  explicit FsSink(std::string root) : root_(std::move(root)) {}
  ~FsSink() override {
    if (fd_ >= 0) ::close(fd_);
  }
  void CreateDirectory(std::string_view path) override {
    std::string p = Full(path);
    if (::mkdir(p.c_str(), 0755) != 0) Fail("mkdir", p);
  }
  void BeginRegular(std::string_view path, bool executable, uint64_t, uint64_t) override {
    current_ = Full(path);
    executable_ = executable;
    fd_ = ::open(current_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) Fail("create", current_);
  }
  void RegularData(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        Fail("write", current_);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  void EndRegular() override {
    if (::fchmod(fd_, executable_ ? 0555 : 0444) != 0) Fail("chmod", current_);
    if (::close(fd_) != 0) {
      fd_ = -1;
      Fail("close", current_);
    }
    fd_ = -1;
  }
  void CreateSymlink(std::string_view path, std::string_view target) override {
    std::string p = Full(path);
    if (::symlink(std::string(target).c_str(), p.c_str()) != 0) Fail("symlink", p);
  }

 private:
  std::string Full(std::string_view path) const {
    return path.empty() ? root_ : root_ + "/" + std::string(path);
  }
  [[noreturn]] void Fail(const char* what, const std::string& p) {
    throw Error(std::string(what) + " " + p + ": " + std::strerror(errno));
  }
  std::string root_;
  std::string current_;
  bool executable_ = false;
  int fd_ = -1;
};

int StatusFor(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const NotFoundError&) {
    return 3;
  } catch (const IntegrityError&) {
    return 4;
  } catch (const FormatError&) {
    return 4;
  } catch (const SignatureError&) {
    return 4;
  } catch (const TransientError&) {
    return 5;
  } catch (const ConfigError&) {
    return 2;
  } catch (...) {
    return 1;
  }
}

std::string HashPartOf(std::string arg) {
  if (size_t slash = arg.rfind('/'); slash != std::string::npos) arg = arg.substr(slash + 1);
  return arg.substr(0, std::min<size_t>(arg.size(), StorePath::kHashLength));
}

void Usage() {
  std::cerr << "usage: fetch_tool [--substituter URL]... [--trusted-public-key KEY]... "
               "[--no-require-sigs] [--nix-conf FILE] [--stalled-timeout S] [--connect-timeout "
               "S] [--attempts N] [--negative-ttl S] [--jobs N] [--closure] [--log-level L] "
               "[--stats] PATH... OUTDIR\n";
}

}  // namespace

int main(int argc, char** argv) {
  SetLogProgramName("fetch_tool");
  std::vector<std::string> args(argv + 1, argv + argc);
  FetchOptions opts;
  std::vector<std::string> cli_subs, cli_keys, positional;
  bool no_sigs = false, closure = false, stats = false;
  std::string nix_conf;
  std::optional<double> stalled, connect, neg_ttl;
  std::optional<int> attempts, jobs;
  try {
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= args.size()) throw ConfigError("option " + a + " needs a value");
        return args[++i];
      };
      if (a == "--substituter") {
        cli_subs.push_back(value());
      } else if (a == "--trusted-public-key") {
        cli_keys.push_back(value());
      } else if (a == "--no-require-sigs") {
        no_sigs = true;
      } else if (a == "--nix-conf") {
        nix_conf = value();
      } else if (a == "--stalled-timeout") {
        stalled = std::stod(value());
      } else if (a == "--connect-timeout") {
        connect = std::stod(value());
      } else if (a == "--negative-ttl") {
        neg_ttl = std::stod(value());
      } else if (a == "--attempts") {
        attempts = std::stoi(value());
      } else if (a == "--jobs") {
        jobs = std::stoi(value());
      } else if (a == "--closure") {
        closure = true;
      } else if (a == "--stats") {
        stats = true;
      } else if (a == "--log-level") {
        std::string l = value();
        auto level = ParseLogLevel(l);
        if (!level) throw ConfigError("invalid log level '" + l + "'");
        SetLogLevel(*level);
      } else if (a == "--help" || a == "-h") {
        Usage();
        return 0;
      } else if (a.starts_with("--")) {
        throw ConfigError("unknown option " + a);
      } else {
        positional.push_back(a);
      }
    }
    if (positional.size() < 2) {
      Usage();
      return 2;
    }
    if (!nix_conf.empty()) ApplyNixConf(ReadNixConf(nix_conf), opts);
    if (!cli_subs.empty()) opts.substituters = cli_subs;
    for (const std::string& k : cli_keys) opts.trusted_keys.Add(PublicKey::Parse(k));
    if (no_sigs) opts.require_sigs = false;
    if (stalled) opts.stalled_timeout_s = *stalled;
    if (connect) opts.connect_timeout_s = *connect;
    if (neg_ttl) opts.negative_ttl_s = *neg_ttl;
    if (attempts) opts.download_attempts = *attempts;
    if (jobs) opts.max_parallel_downloads = *jobs;
  } catch (const std::exception& e) {
    std::cerr << "fetch_tool: " << e.what() << "\n";
    return 2;
  }

  const std::string outdir = positional.back();
  positional.pop_back();
  const bool subdirs = closure || positional.size() > 1;
  std::unique_ptr<Fetcher> fetcher;
  try {
    fetcher = Fetcher::Create(opts);
    if (subdirs) std::filesystem::create_directories(outdir);
  } catch (const std::exception& e) {
    std::cerr << "fetch_tool: " << e.what() << "\n";
    return 2;
  }

  auto started = std::chrono::steady_clock::now();
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue;
  std::set<std::string> seen;
  int active = 0;
  int status = 0;
  uint64_t nar_bytes = 0, paths = 0;
  for (const std::string& p : positional) {
    std::string h = HashPartOf(p);
    if (seen.insert(h).second) queue.push_back(h);
  }

  auto fetch_one = [&](const std::string& hash_part) {
    auto info = fetcher->Query(hash_part);
    if (!info) throw NotFoundError("no substituter has a valid narinfo for " + hash_part);
    if (closure) {  // queue the references at once, so their downloads overlap with this one
      std::lock_guard<std::mutex> lock(mu);
      for (const StorePath& r : info->info.references) {
        std::string h(r.hash_part());
        if (seen.insert(h).second) queue.push_back(h);
      }
      cv.notify_all();
    }
    const std::string& base = info->info.store_path.base_name();
    std::string dest = subdirs ? outdir + "/" + base : outdir;
    std::string tmp = dest + ".tmp-" + std::to_string(getpid());
    std::filesystem::remove_all(tmp);
    try {
      FsSink sink(tmp);
      fetcher->FetchNar(*info, sink);
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove_all(tmp, ec);  // unverified data never stays
      throw;
    }
    std::filesystem::rename(tmp, dest);
    {
      std::lock_guard<std::mutex> lock(mu);
      std::cout << "fetched " << info->info.store_path.FullPath() << " " << info->info.nar_size
                << "\n";
      nar_bytes += info->info.nar_size;
      ++paths;
    }
  };

  auto worker = [&] {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv.wait(lock, [&] { return !queue.empty() || active == 0; });
      if (queue.empty()) return;
      std::string h = queue.front();
      queue.pop_front();
      ++active;
      lock.unlock();
      int st = 0;
      try {
        fetch_one(h);
      } catch (...) {
        st = StatusFor(std::current_exception());
        try {
          throw;
        } catch (const std::exception& e) {
          std::cerr << "fetch_tool: " << h << ": " << e.what() << "\n";
        }
      }
      lock.lock();
      status = std::max(status, st);
      --active;
      cv.notify_all();
    }
  };
  int nthreads = std::max(1, std::min(opts.max_parallel_downloads, 64));
  if (!closure && positional.size() == 1) nthreads = 1;
  std::vector<std::thread> threads;
  for (int i = 0; i < nthreads; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();

  if (stats) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    FetchStats s = fetcher->Stats();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    std::printf(
        "{\"paths\": %llu, \"nar_bytes\": %llu, \"compressed_bytes\": %llu, \"seconds\": %.3f, "
        "\"cpu_seconds\": %.3f, \"max_rss_kb\": %ld, \"retries\": %llu, \"resumes\": %llu, "
        "\"errors\": %llu, \"narinfo_requests\": %llu}\n",
        static_cast<unsigned long long>(paths), static_cast<unsigned long long>(nar_bytes),
        static_cast<unsigned long long>(s.bytes_downloaded), secs, cpu, ru.ru_maxrss,
        static_cast<unsigned long long>(s.retries), static_cast<unsigned long long>(s.nar_resumes),
        static_cast<unsigned long long>(s.errors),
        static_cast<unsigned long long>(s.narinfo_requests));
  }
  std::cout.flush();
  return status;
}
