// nix-lazy-store: a lazy, read-only /nix/store over FUSE. See `nix-lazy-store --help`.
#include <sys/resource.h>

#include <iostream>
#include <string>
#include <vector>

#include "fuse/cli.h"
#include "fuse/commands.h"

namespace {

// The cache keeps chunk files open (bounded by half the soft RLIMIT_NOFILE), and a FUSE daemon
// serves many readers: use all the descriptors the hard limit allows (often 1024 soft vs 512Ki
// hard under systemd and Kubernetes).
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int main(int argc, char** argv) {
  RaiseOpenFileLimit();
  std::vector<std::string> args(argv + 1, argv + argc);
  nls::Command command;
  try {
    command = nls::ParseCommandLine(args);
  } catch (const nls::Error& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  return std::visit(
      [](auto& c) -> int {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, nls::HelpCommand>) {
          std::cout << c.text;
          return 0;
        } else if constexpr (std::is_same_v<T, nls::VersionCommand>) {
          std::cout << "nix-lazy-store 0.1.0\n";
          return 0;
        } else if constexpr (std::is_same_v<T, nls::MountCommand>) {
          return nls::RunMount(c);
        } else if constexpr (std::is_same_v<T, nls::PrefetchCommand>) {
          return nls::RunPrefetch(c);
        } else if constexpr (std::is_same_v<T, nls::StatusCommand>) {
          return nls::RunStatus(c);
        } else if constexpr (std::is_same_v<T, nls::GcCommand>) {
          return nls::RunGc(c);
        } else {
          return nls::RunFsck(c);
        }
      },
      command);
}
