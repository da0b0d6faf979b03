"""Prompt prefixes' KV states on disk, so a new process starts where an earlier one left off.

Within a process the llama.cpp backend keeps the KV state of the prefix consecutive prompts
share (templates put the item last). Each new process used to pay that prefix again: ~15 s
for the generator's ~1,000-token fixed text on 2 CPU cores, once per ``cgr-eval`` run and per
study cell. This is llama.cpp's prompt cache (``llama-cli --prompt-cache``): the state of one
sequence saved with ``llama_state_seq_save_file``, the tokens with it.

A saved state is the very KV data the saving process computed from an empty context, so a
prompt that continues it gets the logits it gets within one process (``llama_decode.feed``'s
16-token rule applies the same). States are kept per model file, llama.cpp build, CPU features
and thread count, since the last bits of the KV data depend on all four.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .llama_decode import shared_prefix

__all__ = ["MIN_PREFIX", "PromptCache"]

MIN_PREFIX = 256  # shorter shared prefixes are cheaper to evaluate than to save and load
_BUCKET = MIN_PREFIX  # a file is found by a hash of the first tokens: one per opening
_KEEP = 8  # states kept per model; the least recently used go first


@dataclass
class PromptCache:
    """Saved prefix states of one model in one folder."""

    folder: Path

    @classmethod
    def for_model(cls, root: str | Path, llm: Any, model_sha256: str | None, n_threads: int
                  ) -> PromptCache:
        import llama_cpp

        build = "|".join([llama_cpp.__version__,
                          llama_cpp.llama_print_system_info().decode(errors="replace"),
                          str(n_threads), model_sha256 or _file_identity(llm.model_path)])
        digest = hashlib.sha256(build.encode()).hexdigest()[:24]
        return cls(Path(root) / digest)

    def opening(self, tokens: Sequence[int]) -> str:
        """The name of the state that serves prompts opening like ``tokens``."""
        head = np.asarray(tokens[:_BUCKET], dtype=np.int32).tobytes()
        return f"{hashlib.sha256(head).hexdigest()[:32]}.state"

    def _path(self, tokens: Sequence[int]) -> Path:
        return self.folder / self.opening(tokens)

    def load(self, llm: Any, prompt: Sequence[int]) -> int:
        """Put the saved state that opens like ``prompt`` into ``llm``'s (empty) context; the
        number of positions it holds (``feed`` keeps those ``prompt`` shares), 0 when there is
        none or it shares too little (the context is then left empty)."""
        import llama_cpp

        path = self._path(prompt)
        if len(prompt) < MIN_PREFIX or not path.exists():
            return 0
        capacity = llm.n_ctx()
        tokens = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        llm.reset()
        llm._ctx.kv_cache_clear()
        read = llama_cpp.llama_state_seq_load_file(llm.ctx, str(path).encode(), 0, tokens,
                                                   capacity, ctypes.byref(count))
        held = list(tokens[:count.value])
        if read == 0 or shared_prefix(held, prompt) < MIN_PREFIX:
            llm._ctx.kv_cache_clear()  # unreadable, or other tokens: start afresh
            return 0
        llm.input_ids[:len(held)] = held
        llm.n_tokens = len(held)
        os.utime(path)  # recently used: kept the longest
        return len(held)

    def save(self, llm: Any, size: int) -> None:
        """Keep the first ``size`` positions of ``llm``'s context, drop the rest from it, and
        write them (a new file replaces the one of the same opening)."""
        import llama_cpp

        llm._ctx.kv_cache_seq_rm(-1, size, -1)
        llm.n_tokens = size
        tokens = (llama_cpp.llama_token * size)(*map(int, llm.input_ids[:size]))
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(list(tokens))
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
        os.close(handle)
        try:
            if llama_cpp.llama_state_seq_save_file(llm.ctx, temporary.encode(), 0, tokens,
                                                   size) == 0:
                raise OSError(f"llama.cpp could not write {temporary}")
            os.replace(temporary, path)  # whole files only, whatever another process does
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        states = sorted(self.folder.glob("*.state"), key=lambda p: p.stat().st_mtime)
        for old in states[:-_KEEP]:
            old.unlink(missing_ok=True)


def _file_identity(path: str) -> str:
    """A GGUF's identity without hashing gigabytes: its path, size and modification time."""
    stat = os.stat(path)
    return f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"
