#!/usr/bin/env bash
# Runs every fuzz target (fuzz/targets.rs) for INPUTS inputs each (default 1,000,000) on the
# stable toolchain, in the dev profile; crashes land in fuzz/crashes/.
#
#   fuzz/run.sh                 # all targets, 1,000,000 inputs each
#   fuzz/run.sh path 5000000 7  # one target, 5,000,000 inputs, seed 7
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --example fuzz -- "${1:-all}" "${2:-1000000}" "${3:-1}"
