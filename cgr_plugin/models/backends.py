"""Language-model handles the ``cgr`` model talks to: chat turn in, text out, greedy.

The public names in one place (and the 0.1 import path ``cgr_plugin.backends``); each lives in
the module of its job: ``base`` (protocol, requests, answers), ``llama_cpp`` (the embedded
offline default), ``lm_eval_backend`` (any lm-eval registered model), ``factory``
(``make_backend``), ``retry`` (``RetryingBackend``).
"""

from __future__ import annotations

from .base import (
    Backend,
    BackendError,
    Generation,
    GenerationRequest,
    Judgement,
    Progress,
    judgements,
    prompt_too_long,
    seconds_each,
)
from .factory import make_backend
from .llama_cpp import LlamaCppBackend
from .lm_eval_backend import LmEvalBackend
from .retry import RetryingBackend

__all__ = ["Backend", "BackendError", "Generation", "GenerationRequest", "Judgement",
           "LlamaCppBackend", "LmEvalBackend", "Progress", "RetryingBackend", "judgements",
           "make_backend", "prompt_too_long", "seconds_each"]
