#!/usr/bin/env bash
# Installs everything nix-lazy-store needs to build, test, fuzz and benchmark on Debian 12.
# Idempotent; run as root. Used by .ci/run, the README and the demo.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git clang libclang-rt-14-dev clang-format
  libfuse3-dev fuse3 libcurl4-openssl-dev libzstd-dev zstd liblzma-dev xz-utils libbz2-dev bzip2
  libssl-dev nlohmann-json3-dev libxxhash-dev libgtest-dev libgmock-dev
  nix-bin nginx-light squid curl openssl python3 util-linux procps psmisc attr patchelf
  libnetfilter-queue-dev iptables iproute2 iputils-ping sshfs openssh-server  # bench/net_bench.py
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx and squid packages start system services; tests run their own instances.
for svc in nginx squid; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
# openssh-server (bench/net_bench.py runs its own sshd inside a network namespace): stop the system
# sshd only when this script just installed it, never one the machine already relied on.
if printf '%s\n' "${missing[@]}" | grep -qx openssh-server; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
    systemctl disable --now ssh || true
  fi
fi
