#!/usr/bin/env bash
# Download, for Python 3.12, the wheels that benchmarks/gpu_check.py needs on the H200 device
# machine and that its image lacks, into .gpu_wheels/ (ignored by git, carried with the call).
#
# The image already has Python 3.12 with torch, transformers, accelerate, huggingface-hub,
# tokenizers, numpy, scipy, pandas, pyarrow, scikit-learn, sacrebleu, matplotlib, jinja2,
# pluggy, pyyaml, requests, tqdm, xxhash, aiohttp, httpx, python-dateutil (the device notes'
# package list). What is missing for `import lm_eval`, `lm_eval.evaluator`, the lm-eval CLI's
# result table and cgr_plugin's `hf` path is listed below. Left out on purpose, because
# lm-eval imports them only for other tasks, models or options: evaluate (only for metrics
# missing from lm-eval's registry, and its import failure is caught), sqlitedict (--use_cache),
# rouge-score and nltk, word2number (task utilities), more-itertools (vllm), zstandard and
# jsonlines (decontamination).
# fsspec is carried although the image has one: datasets pins an upper bound on it.
#
# On the device machine (carry: [".gpu_wheels"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
#     .gpu_wheels/*.whl && export PYTHONPATH=/tmp/site:.
#
# Usage: bash scripts/gpu_wheels.sh [DEST]   (GPU_WHEELS_PYTHON=3.11 for a local try-out)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu_wheels}
PYVER=${GPU_WHEELS_PYTHON:-3.12}
LIMIT_MIB=${GPU_WHEELS_LIMIT_MIB:-56}   # the call carries 64 MiB, working tree included
CARRY_MIB=64

WHEELS=(
  lm-eval==0.4.13
  # datasets: lm_eval.api.task imports it; dill and multiprocess are its (and lm-eval's) needs
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
  # the result table the lm-eval CLI prints at the end of every run (lm_eval.utils.make_table)
  pytablewriter==1.2.1 DataProperty==1.1.1 mbstrdecoder==1.1.5 pathvalidate==3.3.1
  tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5 chardet==6.0.0.post1
  # typepy reads the table's header cells as possible dates with pytz (the image has no pytz)
  pytz==2026.6
)

rm -rf "$DEST"
mkdir -p "$DEST"
python3 -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  -d "$DEST" "${WHEELS[@]}"

# One version of each project: two stop a --no-deps --target install.
names=$(for f in "$DEST"/*.whl; do basename "$f" | cut -d- -f1 | tr 'A-Z_.' 'a-z--'; done)
if [ -n "$(echo "$names" | sort | uniq -d)" ]; then
  echo "gpu_wheels: two versions of: $(echo "$names" | sort | uniq -d | tr '\n' ' ')" >&2
  exit 1
fi
count=$(ls "$DEST"/*.whl | wc -l)
if [ "$count" -ne "${#WHEELS[@]}" ]; then
  echo "gpu_wheels: expected ${#WHEELS[@]} wheels, got $count" >&2
  exit 1
fi

wheel_bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree_bytes=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
ls -l "$DEST" | awk 'NR > 1 {printf "%10d  %s\n", $5, $9}'
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "gpu_wheels: $count wheels, $(mib "$wheel_bytes") MiB (limit $LIMIT_MIB); with the tracked" \
  "tree ($(mib "$tree_bytes") MiB): $(mib $((wheel_bytes + tree_bytes))) MiB of $CARRY_MIB carried"
if [ "$wheel_bytes" -gt $((LIMIT_MIB << 20)) ] || \
   [ $((wheel_bytes + tree_bytes)) -gt $((CARRY_MIB << 20)) ]; then
  echo "gpu_wheels: too large to carry" >&2
  exit 1
fi
