#!/usr/bin/env bash
# Configures and builds Tandem into build/ (binaries in build/bin/). Extra arguments go to cmake,
# e.g. bash tools/build.sh -DTANDEM_WERROR=ON
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
# A compiler cache, where one is installed, makes rebuilds in a second checkout cheap.
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" "$@" >/dev/null
cmake --build build
