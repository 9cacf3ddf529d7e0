#!/usr/bin/env bash
# THE test command of nix-lazy-store (CI runs exactly this through .ci/run).
# On a fresh Debian 12 machine, as root:   bash tests/run.sh
#
# Sections, each reported PASS/FAIL with its duration:
#   deps        packaging/install-deps.sh (apt packages; a no-op when all are installed)
#   build       cmake + ninja (RelWithDebInfo) in build/
#   ctest       every test in build/ (unit + integration: real Nix, nginx, FUSE in `unshare -m`)
#   demo        packaging/demo/demo.py with build/'s binary (what packaging/demo/run.sh runs)
#   asan-build  build with -DNLS_SANITIZE=ON (ASan + UBSan) in build-asan/
#   asan-unit   ctest -L unit in build-asan/
#   asan-integ  ctest -L integration in build-asan/ (the daemon itself runs under ASan/UBSan)
#   fuzz-build  clang + -DNLS_FUZZ=ON in build-fuzz/
#   fuzz        every tests/fuzz/*_fuzz.cc target for NLS_FUZZ_SECONDS (30) seconds on a copy of
#               its seed corpus tests/fuzz/corpus/<name>/ (name with or without _fuzz); any crash,
#               leak, timeout or sanitizer report fails
#   format      clang-format --dry-run --Werror over *.h/*.cc in fetch cache fuse tests bench
# An empty test set (no unit or no integration tests, no fuzz target) is a failure, not a pass.
# The last line is "N passed, N failed" (sections); exit status is non-zero on any failure.
#
# Environment knobs (defaults are what CI uses):
#   NLS_BUILD_PREFIX=build   build dirs are $P, $P-asan, $P-fuzz (developers: e.g. build-infra)
#   NLS_JOBS=2               ninja -j and ctest -j
#   NLS_FUZZ_SECONDS=30      per fuzz target
#   NLS_ASAN_INTEGRATION=1   0 skips the asan-integ section (reported as skipped, not passed)
#   NLS_SKIP_DEPS=1          do not run install-deps.sh (developers on a prepared machine)
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$(pwd)
P=${NLS_BUILD_PREFIX:-build}
JOBS=${NLS_JOBS:-2}
FUZZ_SECONDS=${NLS_FUZZ_SECONDS:-30}
ASAN_INTEGRATION=${NLS_ASAN_INTEGRATION:-1}
export CTEST_OUTPUT_ON_FAILURE=1
# Sanitizers: fail hard on the first report, with stacks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

START=$(date +%s)
PASSED=()
FAILED=()
SKIPPED=()

header() {
  echo
  echo "=================================================================================="
  echo "== $*    ($(date -u +%H:%M:%S), $(($(date +%s) - START)) s elapsed)"
  echo "=================================================================================="
}

# section NAME FUNCTION: runs FUNCTION in a subshell with `set -e`, records PASS/FAIL.
section() {
  local name=$1 fn=$2 t0 rc
  header "$name"
  t0=$(date +%s)
  (set -euo pipefail; "$fn")
  rc=$?
  if [ $rc -eq 0 ]; then
    PASSED+=("$name")
    echo "-- PASS: $name ($(($(date +%s) - t0)) s)"
  else
    FAILED+=("$name")
    echo "-- FAIL: $name (exit status $rc, $(($(date +%s) - t0)) s)"
  fi
  return $rc
}

not_run() {  # a section that could not run because an earlier one failed counts as failed
  header "$1"
  echo "-- FAIL: $1 (not run: $2)"
  FAILED+=("$1")
}

configure_and_build() {  # DIR [cmake args...]
  local dir=$1
  shift
  cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  ninja -C "$dir" -j "$JOBS"
}

# ctest DIR [args]: fails when the selection holds no tests (ctest --no-tests=error).
run_ctest() {
  local dir=$1
  shift
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$JOBS" --timeout 900 "$@"
}

count_tests() {  # DIR LABEL -> number of tests with that label
  ctest --test-dir "$1" -N -L "$2" | sed -n 's/^Total Tests: *//p'
}

s_deps() {
  if [ "${NLS_SKIP_DEPS:-0}" = 1 ]; then
    echo "NLS_SKIP_DEPS=1: not running packaging/install-deps.sh"
  else
    bash packaging/install-deps.sh
  fi
  for tool in cmake ninja g++ clang++ clang-format nix-build nginx unshare nsenter python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool"; return 1; }
  done
  [ -e /dev/fuse ] || { echo "missing /dev/fuse (FUSE kernel module)"; return 1; }
  [ "$(id -u)" = 0 ] || { echo "tests need root (FUSE mounts in mount namespaces, nix as root)"; return 1; }
}

s_build() {
  configure_and_build "$P" -DNLS_SANITIZE=OFF -DNLS_FUZZ=OFF
}

s_ctest() {
  local unit integ
  unit=$(count_tests "$P" unit)
  integ=$(count_tests "$P" integration)
  echo "tests found: ${unit:-0} unit, ${integ:-0} integration"
  if [ "${unit:-0}" -eq 0 ] || [ "${integ:-0}" -eq 0 ]; then
    echo "FAIL: expected both unit and integration tests"
    return 1
  fi
  run_ctest "$P"
}

s_demo() {  # the README's first command, minus install/build (done above)
  python3 packaging/demo/demo.py --binary "$P/fuse/nix-lazy-store" \
    --workdir /var/tmp/nix-lazy-store-demo-test
}

s_asan_build() {
  configure_and_build "$P-asan" -DNLS_SANITIZE=ON -DNLS_FUZZ=OFF -DNLS_BENCH=OFF
}

s_asan_unit() {
  run_ctest "$P-asan" -L unit
}

s_asan_integ() {
  run_ctest "$P-asan" -L integration
}

s_fuzz_build() {  # only the *_fuzz targets (and the libraries they link)
  local targets=() src
  shopt -s nullglob
  for src in "$ROOT"/tests/fuzz/*_fuzz.cc; do targets+=("$(basename "$src" .cc)"); done
  if [ ${#targets[@]} -eq 0 ]; then
    echo "FAIL: no fuzz targets (tests/fuzz/*_fuzz.cc)"
    return 1
  fi
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$P-fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DNLS_FUZZ=ON -DNLS_SANITIZE=OFF -DNLS_BENCH=OFF
  ninja -C "$P-fuzz" -j "$JOBS" "${targets[@]}"
}

s_fuzz() {
  local srcs=() src name bin corpus work failed=0 seeds
  shopt -s nullglob
  srcs=("$ROOT"/tests/fuzz/*_fuzz.cc)
  if [ ${#srcs[@]} -eq 0 ]; then
    echo "FAIL: no fuzz targets (tests/fuzz/*_fuzz.cc)"
    return 1
  fi
  mkdir -p "$P-fuzz/artifacts"
  for src in "${srcs[@]}"; do
    name=$(basename "$src" .cc)
    bin=$(find "$P-fuzz" -type f -name "$name" -perm -u+x | head -n 1)
    if [ -z "$bin" ]; then
      echo "FAIL: $name: binary not built"
      failed=1
      continue
    fi
    work=$(mktemp -d "/tmp/nls-fuzz-$name.XXXXXX")
    corpus=""
    for c in "$ROOT/tests/fuzz/corpus/$name" "$ROOT/tests/fuzz/corpus/${name%_fuzz}"; do
      [ -d "$c" ] && corpus=$c && break
    done
    seeds=0
    if [ -n "$corpus" ]; then
      cp -r "$corpus/." "$work/"
      seeds=$(find "$work" -type f | wc -l)
    fi
    echo "--- $name: ${FUZZ_SECONDS}s, $seeds seeds from ${corpus:-<none>}"
    if "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$ROOT/$P-fuzz/artifacts/$name-" "$work" \
        >"$work.log" 2>&1; then
      tail -n 12 "$work.log"
      echo "--- $name: ok"
    else
      tail -n 80 "$work.log"
      echo "--- $name: FAILED (artifacts in $P-fuzz/artifacts/; full log $work.log)"
      failed=1
      continue
    fi
    rm -rf "$work" "$work.log"
  done
  return $failed
}

s_format() {
  local files
  mapfile -t files < <(find fetch cache fuse tests bench -type f \( -name '*.h' -o -name '*.cc' \) \
    2>/dev/null | sort)
  echo "checking ${#files[@]} files with $(clang-format --version)"
  [ ${#files[@]} -gt 0 ]
  clang-format --dry-run --Werror "${files[@]}"
}

echo "nix-lazy-store test suite: $ROOT, build dirs $P, $P-asan, $P-fuzz, jobs $JOBS"
echo "git: $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null || echo 'not a git checkout')"

# Sections are never run inside `if`/`&&` (bash would silently disable `set -e` inside them).
section deps s_deps
deps_rc=$?
if [ $deps_rc -eq 0 ]; then
  section build s_build
  build_rc=$?
  if [ $build_rc -eq 0 ]; then
    section ctest s_ctest
    section demo s_demo
  else
    not_run ctest "build failed"
    not_run demo "build failed"
  fi
  section asan-build s_asan_build
  asan_rc=$?
  if [ $asan_rc -eq 0 ]; then
    section asan-unit s_asan_unit
    if [ "$ASAN_INTEGRATION" = 1 ]; then
      section asan-integ s_asan_integ
    else
      SKIPPED+=("asan-integ")
    fi
  else
    not_run asan-unit "asan-build failed"
    if [ "$ASAN_INTEGRATION" = 1 ]; then not_run asan-integ "asan-build failed"; fi
  fi
  section fuzz-build s_fuzz_build
  fuzz_rc=$?
  if [ $fuzz_rc -eq 0 ]; then
    section fuzz s_fuzz
  else
    not_run fuzz "fuzz-build failed"
  fi
else
  for s in build ctest demo asan-build asan-unit fuzz-build fuzz; do not_run "$s" "deps failed"; done
fi
section format s_format

header "summary ($(($(date +%s) - START)) s)"
for s in "${PASSED[@]}"; do echo "PASS    $s"; done
for s in "${SKIPPED[@]}"; do echo "SKIPPED $s (NLS_ASAN_INTEGRATION=0)"; done
for s in "${FAILED[@]}"; do echo "FAIL    $s"; done
echo "${#PASSED[@]} passed, ${#FAILED[@]} failed"
[ ${#FAILED[@]} -eq 0 ]
