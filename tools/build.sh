#!/usr/bin/env bash
# Configures and builds Tandem into build/ (binaries in build/bin/). Extra arguments go to cmake,
# e.g. bash tools/build.sh -DTANDEM_WERROR=ON
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build build
