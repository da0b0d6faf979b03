"""``solver=NAME`` / ``generator=NAME`` to a backend: the registry first, then plugins, then
any lm-eval registered model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import plugins
from .base import Backend, BackendError
from .llama_cpp import LlamaCppBackend
from .lm_eval_backend import LmEvalBackend
from .registry import HUB_BACKENDS, ModelSpec, RegistryError, load_registry

__all__ = ["make_backend"]

_LLAMA_CPP_ARGS = frozenset({"n_ctx", "n_threads", "seed", "n_gpu_layers", "main_gpu",
                             "draft_tokens", "draft_costs", "prompt_cache"})
_LM_EVAL_DEFAULTS = ("device", "batch_size")  # the run's settings that lm-eval models take
_PLUGIN_DEFAULTS = ("seed", "n_threads", "n_ctx", *_LM_EVAL_DEFAULTS)  # and plugin backends


def make_backend(name: str, args: Mapping[str, Any], *,
                 registry: Mapping[str, ModelSpec] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> tuple[Backend, ModelSpec | None]:
    """Resolve ``name``: a registry model first, then any lm-eval registered model.

    ``chat_template`` in ``args`` (``solver.chat_template=False``) is this backend's own switch
    for lm-eval models, not passed on to lm-eval.
    """
    registry = registry if registry is not None else load_registry()
    args = dict(args)
    defaults = dict(defaults or {})
    spec = registry.get(name)
    if spec is not None and spec.format == "gguf":
        unknown = set(args) - _LLAMA_CPP_ARGS
        if unknown:
            raise BackendError(f"unknown argument {sorted(unknown)[0]!r} for llama.cpp model "
                               f"{name!r} (allowed: {', '.join(sorted(_LLAMA_CPP_ARGS))})")
        merged = {k: v for k, v in defaults.items() if k in _LLAMA_CPP_ARGS} | args
        return LlamaCppBackend(spec, **merged), spec
    factory = plugins.registry().entries["models"].get(name)
    if factory is not None and spec is None:  # a plugin's backend
        return factory({**{k: v for k, v in defaults.items() if k in _PLUGIN_DEFAULTS},
                        **args}), None
    chat = args.pop("chat_template", None)
    if spec is not None:  # format: hf -> lm-eval's own hf or vllm model
        return _hub_backend(spec, args, chat, defaults), spec
    import lm_eval.models  # noqa: F401  (lm-eval registers its own backends when imported)
    from lm_eval.api.registry import model_registry

    if name not in model_registry:
        raise BackendError(
            f"unknown model {name!r}: not in the cgr registry ({', '.join(sorted(registry))}) "
            "and not an lm-eval model (see `lm-eval ls models`)")
    if name == "cgr":
        raise RegistryError("the cgr model cannot be its own solver or generator")
    forwarded = {k: v for k, v in defaults.items() if k in _LM_EVAL_DEFAULTS} | args
    return LmEvalBackend(name, forwarded, chat), None


def _hub_backend(spec: ModelSpec, args: dict[str, Any], chat: Any,
                 defaults: Mapping[str, Any]) -> LmEvalBackend:
    """An hf-format registry entry on its recommended backend (``hf`` or ``vllm``), or on the
    one ``backend=`` names, with the entry's arguments for it under the run's own.

    ``backend`` is this backend's switch only when it names one of the entry's backends: hf's
    own ``backend`` option (causal, seq2seq) passes through unchanged.
    """
    backend = spec.backend
    if args.get("backend") in HUB_BACKENDS:
        backend = args.pop("backend")
    if backend not in spec.backends:
        raise BackendError(f"model {spec.name!r} has no arguments for backend {backend!r} in "
                           f"its registry entry ({spec.origin}); it has: "
                           f"{', '.join(spec.backends)}")
    if chat is None and spec.chat_template == "none":
        chat = False  # raw prompts; "tokenizer" keeps None: its template wherever it has one
    forwarded = {k: v for k, v in defaults.items() if k in _LM_EVAL_DEFAULTS}
    merged = {"pretrained": spec.pretrained, **spec.backends[backend], **forwarded, **args}
    return LmEvalBackend(backend, merged, chat)
