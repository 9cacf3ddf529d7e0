#!/usr/bin/env bash
# The nix-lazy-store demo (README's first command). On a fresh Debian 12 machine, as root:
#   bash packaging/demo/run.sh [--keep]
# Installs the Debian packages, builds nix-lazy-store (build/, target nix-lazy-store only), then
# runs packaging/demo/demo.py: a real Nix closure in a signed zstd binary cache served by nginx on
# 127.0.0.1, nix-lazy-store mounted at /nix/store inside a private mount namespace (the host's
# /nix/store is never mounted over), a program run from it, and what was fetched.
# Work files: /var/tmp/nix-lazy-store-demo (removed at the end unless --keep).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "run as root (FUSE mount in a private mount namespace, Nix without a daemon)" >&2
  exit 1
fi
BUILD=${NLS_BUILD_PREFIX:-build}
echo "==> Installing Debian packages (packaging/install-deps.sh)"
bash packaging/install-deps.sh
echo "==> Building nix-lazy-store in $BUILD/"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$BUILD" -j "${NLS_JOBS:-2}" nix-lazy-store
exec python3 packaging/demo/demo.py --binary "$BUILD/fuse/nix-lazy-store" "$@"
