#!/usr/bin/env bash
# make bench's tools, installed once into .bench-tools/ (and apt): wrk, h2load, perf_analyzer
# 2.51 and a PyTriton 0.7.0 venv. Newer perf_analyzer builds need glibc 2.38; 2.51 runs on
# Debian 12. Every step is skipped when its result is already there.
set -euo pipefail
TOOLS=${TOOLS:-.bench-tools}
PYTHON=${PYTHON:-python3.11}
SKLEARN=$(grep -i '^scikit-learn==' constraints.txt | cut -d= -f3)
JOBLIB=$(grep -i '^joblib==' constraints.txt | cut -d= -f3)
XGBOOST=$(grep -i '^xgboost==' constraints.txt | cut -d= -f3)
mkdir -p "$TOOLS/bin" "$TOOLS/lib" "$TOOLS/download"

apt_install() {  # package names; an old package list gets one refresh
    apt-get install -y -q "$@" || (apt-get update -q && apt-get install -y -q "$@")
}
command -v wrk >/dev/null || apt_install wrk
command -v h2load >/dev/null || apt_install nghttp2-client
# perf_analyzer links libb64 (Debian's libb64-0d) and libcudart 12 (from PyPI, below).
ldconfig -p | grep -q libb64.so.0d || apt_install libb64-0d

if [ ! -x "$TOOLS/bin/perf_analyzer" ]; then
    # The binary ships inside tritonclient's platform wheel (PyPI's perf-analyzer is empty).
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
        tritonclient==2.51.0 -d "$TOOLS/download"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
        nvidia-cuda-runtime-cu12==12.9.79 -d "$TOOLS/download"
    unzip -o -q -j "$TOOLS"/download/tritonclient-2.51.0-*.whl \
        'tritonclient-2.51.0.data/data/bin/perf_analyzer' -d "$TOOLS/bin"
    unzip -o -q -j "$TOOLS"/download/nvidia_cuda_runtime_cu12-*.whl \
        'nvidia/cuda_runtime/lib/libcudart.so.12' -d "$TOOLS/lib"
    chmod +x "$TOOLS/bin/perf_analyzer"
fi
LD_LIBRARY_PATH="$TOOLS/lib" "$TOOLS/bin/perf_analyzer" --version

if [ ! -f "$TOOLS/pytriton/.installed" ]; then
    # Its own venv: PyTriton 0.7.0 needs numpy<2; the artifacts' libraries at our versions.
    "$PYTHON" -m venv "$TOOLS/pytriton"
    "$TOOLS/pytriton/bin/python" -m pip install -q nvidia-pytriton==0.7.0 'numpy<2' \
        "scikit-learn==$SKLEARN" "joblib==$JOBLIB" "xgboost-cpu==$XGBOOST"
    touch "$TOOLS/pytriton/.installed"
fi
