// `nix-lazy-store prefetch | status | gc | fsck`.
#include "fuse/commands.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "cache/lazy_store.h"
#include "cache/store_cache.h"
#include "fetch/error.h"
#include "fetch/fetcher.h"
#include "fetch/log.h"
#include "fuse/figures.h"
#include "fuse/store_config.h"

namespace nls {
namespace {

std::string HumanBytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace

std::optional<StoreSetup> StoreSetupOrReport(const StoreOptions& options,
                                             std::string_view command) {
  try {
    return BuildStoreSetup(options);
  } catch (const Error& e) {
    std::cerr << "nix-lazy-store " << command << ": " << e.what() << "\n";
    return std::nullopt;
  }
}

int RunPrefetch(const PrefetchCommand& cmd) {
  if (cmd.store.log_level) SetLogLevel(*cmd.store.log_level);
  std::optional<StoreSetup> setup = StoreSetupOrReport(cmd.store, "prefetch");
  if (!setup) return 2;
  std::unique_ptr<StoreCache> cache;
  std::unique_ptr<Fetcher> fetcher;
  try {
    cache = StoreCache::Open(setup->cache);
    fetcher = Fetcher::Create(setup->fetch);
  } catch (const std::exception& e) {
    std::cerr << "nix-lazy-store prefetch: " << e.what() << "\n";
    return 1;
  }
  LazyStoreOptions lazy_options;
  lazy_options.prefetch_references = false;
  lazy_options.prefetch_workers = 0;
  LazyStore lazy(*cache, *fetcher, lazy_options);

  std::vector<std::string> roots;
  for (const std::string& p : cmd.paths) roots.push_back(p.substr(0, StorePath::kHashLength));
  for (const std::string& p : setup->cache.pins)
    roots.push_back(p.substr(0, StorePath::kHashLength));
  const bool tty = ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  std::mutex out_mu;
  auto progress = [&](const ClosureProgress& p) {
    if (!tty) return;
    std::lock_guard lock(out_mu);
    std::fprintf(stderr, "\r[%llu/%llu] fetched %llu (%s), cached %llu, failed %llu   ",
                 static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.known),
                 static_cast<unsigned long long>(p.fetched), HumanBytes(p.nar_bytes).c_str(),
                 static_cast<unsigned long long>(p.already_cached),
                 static_cast<unsigned long long>(p.failed));
    std::fflush(stderr);
  };
  ClosureProgress result = lazy.FetchClosure(roots, cmd.jobs, progress);
  if (tty) std::fprintf(stderr, "\n");

  // The names given must be the names the substituters have for these hashes.
  uint64_t wrong_names = 0;
  for (const std::string& p : cmd.paths) {
    auto cached = cache->FindById(cache->IdFor(StorePath::FromBaseName(p)));
    if (!cached) {
      auto by_hash = cache->Find(std::string_view(p).substr(0, StorePath::kHashLength));
      if (by_hash) {
        std::cerr << "nix-lazy-store prefetch: /nix/store/" << p << " is not in the cache; the "
                  << "substituter has " << by_hash->path.FullPath() << " for that hash\n";
        ++wrong_names;
      }
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char line[256];
  std::snprintf(line, sizeof(line),
                "prefetch: %llu paths in closure: %llu fetched (%s NAR), %llu already cached, "
                "%llu failed, in %.1f s",
                static_cast<unsigned long long>(result.known),
                static_cast<unsigned long long>(result.fetched),
                HumanBytes(result.nar_bytes).c_str(),
                static_cast<unsigned long long>(result.already_cached),
                static_cast<unsigned long long>(result.failed), secs);
  std::cout << line << std::endl;
  return result.failed == 0 && wrong_names == 0 ? 0 : 1;
}

int RunStatus(const StatusCommand& cmd) {
  const char* path = cmd.mountpoint.c_str();
  ssize_t size = ::listxattr(path, nullptr, 0);
  if (size < 0) {
    std::cerr << "nix-lazy-store status: " << Quoted(cmd.mountpoint) << ": " << std::strerror(errno)
              << "\n";
    return 1;
  }
  std::string names(static_cast<size_t>(size) + 1, '\0');
  size = ::listxattr(path, names.data(), names.size());
  if (size < 0) {
    std::cerr << "nix-lazy-store status: " << Quoted(cmd.mountpoint) << ": " << std::strerror(errno)
              << "\n";
    return 1;
  }
  names.resize(static_cast<size_t>(size));
  std::vector<std::pair<std::string, uint64_t>> figures;
  size_t pos = 0;
  while (pos < names.size()) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    if (name.rfind(kXattrPrefix, 0) != 0) continue;
    char value[64];
    ssize_t n = ::getxattr(path, name.c_str(), value, sizeof(value) - 1);
    if (n < 0) continue;
    value[n] = '\0';
    figures.emplace_back(name.substr(kXattrPrefix.size()), std::strtoull(value, nullptr, 10));
  }
  if (figures.empty()) {
    std::cerr << "nix-lazy-store status: " << Quoted(cmd.mountpoint)
              << " is not a nix-lazy-store mount (no user.nix-lazy-store.* attributes)\n";
    return 1;
  }
  if (cmd.json) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, value] : figures) j[name] = value;
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::cout << "nix-lazy-store at " << cmd.mountpoint << "\n";
  for (const auto& [name, value] : figures) {
    const bool bytes = name.find("bytes") != std::string::npos;
    std::cout << "  " << name << ": " << value;
    if (bytes && value >= 1024) std::cout << " (" << HumanBytes(value) << ")";
    std::cout << "\n";
  }
  return 0;
}

int RunGc(const GcCommand& cmd) {
  if (cmd.log_level) SetLogLevel(*cmd.log_level);
  CacheOptions options;
  options.dir = cmd.cache_dir;
  options.max_bytes = cmd.max_size;
  try {
    auto cache = StoreCache::Open(options);
    CacheStats before = cache->Stats();
    cache->Evict(cmd.max_size);
    CacheStats after = cache->Stats();
    std::cout << "gc: " << before.paths << " paths, " << HumanBytes(before.bytes_used) << " -> "
              << after.paths << " paths, " << HumanBytes(after.bytes_used) << " ("
              << (after.evictions - before.evictions) << " evicted; limit "
              << HumanBytes(cmd.max_size) << ")" << std::endl;
    if (after.bytes_used > cmd.max_size && after.paths > 0) {
      std::cout << "gc: still over the limit: the remaining paths are pinned (with their "
                   "closures)"
                << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "nix-lazy-store gc: " << e.what() << "\n";
    return 1;
  }
}

int RunFsck(const FsckCommand& cmd) {
  if (cmd.log_level) SetLogLevel(*cmd.log_level);
  CacheOptions options;
  options.dir = cmd.cache_dir;
  uint64_t problems = 0;
  try {
    bool ok = Fsck(options, [&](std::string_view line) {
      ++problems;
      std::cout << line << "\n";
    });
    std::cout << "fsck " << cmd.cache_dir << ": "
              << (ok ? (problems ? "damage repaired" : "clean") : "DAMAGE REMAINS") << " ("
              << problems << " report line(s))" << std::endl;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "nix-lazy-store fsck: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace nls
