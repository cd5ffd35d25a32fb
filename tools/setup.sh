#!/usr/bin/env bash
# Installs every Debian 12 package Tandem's build and tests need. Idempotent, non-interactive.
#   bash tools/setup.sh              build + test dependencies
#   bash tools/setup.sh --generators also python3-torch and python3-torchvision, to regenerate the
#                                    test models (torchvision: the CNN families, gen_models.py --size large)
set -euo pipefail

packages=(
  build-essential cmake ninja-build g++ git
  libprotobuf-dev protobuf-compiler libonnx-dev libonnx-testdata libdnnl-dev
  # oneDNN's CMake config looks for OpenCL; libdnnl-dev only recommends it.
  ocl-icd-opencl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # libFuzzer targets (tests/fuzz): clang's -fsanitize=fuzzer and its runtime library.
  # clang compiles the engine with -fopenmp too, against LLVM's OpenMP runtime (libomp-dev).
  clang libclang-rt-14-dev libomp-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  # `tandem serve` (src/server): the HTTP server, Debian's compiled cpp-httplib, found through
  # pkg-config (not on a minimal Debian; CI machines happen to have it)
  libcpp-httplib-dev pkg-config
  # `tandem serve --grpc-port`: KServe v2 over gRPC, which the protocol defines and Triton's and
  # KServe's clients speak; Debian's gRPC for C++ and the protoc plugin that compiles
  # src/server/grpc_predict_v2.proto.
  libgrpc++-dev protobuf-compiler-grpc
  # serve_prometheus_test: a real Prometheus scrapes /metrics (the text format accepted as is)
  prometheus
  # tools/serve_bench.py: the load generator (issue 14's benchmark)
  wrk
  # `mpirun -np H tandem run|bench --mpi` (src/distributed): Open MPI, its compiler wrappers and
  # mpirun (which starts ranks on other hosts over ssh: openssh-client comes with openmpi-bin)
  libopenmpi-dev openmpi-bin
  # tandem.MpiPredictor from Python initialises MPI through mpi4py
  python3-mpi4py
  # mpi_netns_test: ranks on two hosts made of network namespaces (ip netns, veth, a bridge)
  iproute2
  python3 python3-dev python3-numpy python3-onnx
  python3-pybind11 pybind11-dev python3-pytest python3-setuptools python3-pip python3-venv
)
if [[ "${1:-}" == "--generators" ]]; then
  packages+=(python3-torch python3-torchvision)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# The gRPC test's client (tests/server/grpc_test.py) is Node.js with @grpc/grpc-js, the client
# the issue names. CI machines carry nodesource's nodejs, which bundles npm and conflicts with
# Debian's npm package: Debian's nodejs and npm only where there is no npm yet.
if ! command -v npm >/dev/null; then
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# Its packages, pinned by the committed package-lock.json; nothing is fetched at build or test
# time. --ignore-scripts: no package's install script runs.
(cd "$(dirname "$0")/../tests/server/grpc_client" &&
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
echo "setup: installed ${#packages[@]} packages and the gRPC test client's npm packages"
