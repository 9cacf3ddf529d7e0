// The subcommands of nix-lazy-store. Each returns the process exit status: 0 success, 1 failure
// (the cause was written to stderr), 2 usage/configuration error.
#pragma once

#include "fuse/cli.h"

namespace nls {

int RunMount(const MountCommand& command);
int RunPrefetch(const PrefetchCommand& command);
int RunStatus(const StatusCommand& command);
int RunGc(const GcCommand& command);
int RunFsck(const FsckCommand& command);

}  // namespace nls
