#!/bin/sh
# Prepare, on this machine, what bench/gpu_bench.py needs on the device tool's bare GPU machine
# (x86-64, Python 3.12 with numpy, jinja2, safetensors, tokenizers, tqdm already there; no network):
#   .whl/  wgpu-py and its two compiled/parsing dependencies, as cp312 manylinux wheels
#   .gl/   the Vulkan loader and glvnd (the NVIDIA Vulkan driver library needs libGLdispatch)
# Both folders are git-ignored through .git/info/exclude and travel with `carry` (~4 MiB of the
# 64 MiB limit). bench/README.md ("Real GPUs") has the `run` command that uses them.
set -eu
cd "$(git rev-parse --show-toplevel)"
PYTHON="${PYTHON:-.venv/bin/python}"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
for d in /.whl/ /.gl/; do grep -qxF "$d" "$exclude" 2>/dev/null || echo "$d" >>"$exclude"; done

# Versions: the ones this project's tests run (pip list in .venv); wgpu-py's other requirement,
# rendercanvas, is only imported for drawing to a canvas.
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    wgpu==0.32.0 cffi==2.1.1 pycparser==3.12

mkdir -p .gl /tmp/amd64/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
# shellcheck disable=SC2086  # $o is several options
apt-get $o update -qq
# shellcheck disable=SC2086
(cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .whl .gl
