// The subcommands of nix-lazy-store. Each returns the process exit status: 0 success, 1 failure
// (the cause was written to stderr), 2 usage/configuration error.
#pragma once

#include <optional>
#include <string_view>

#include "fuse/cli.h"
#include "fuse/store_config.h"

namespace nls {

int RunMount(const MountCommand& command);
int RunPrefetch(const PrefetchCommand& command);
int RunStatus(const StatusCommand& command);
int RunGc(const GcCommand& command);
int RunFsck(const FsckCommand& command);

// BuildStoreSetup for `nix-lazy-store <command>` (mount, prefetch): on an error writes
// "nix-lazy-store <command>: <cause>" to stderr and returns nullopt; the command then exits 2.
std::optional<StoreSetup> StoreSetupOrReport(const StoreOptions& options, std::string_view command);

}  // namespace nls
