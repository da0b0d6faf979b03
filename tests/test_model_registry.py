import hashlib
import sys

import pytest

from cgr_plugin.models.factory import make_backend
from cgr_plugin.models.lm_eval_backend import LmEvalBackend
from cgr_plugin.models.registry import RegistryError, load_registry, model_file, offline_status

HUB_SOLVERS = ("smollm2-360m", "qwen2.5-0.5b", "llama3.2-1b", "qwen2.5-1.5b", "gemma2-2b",
               "granite3.1-2b", "qwen2.5-3b", "llama3.2-3b", "phi3.5-mini")


def test_packaged_registry_has_the_embedded_models():
    registry = load_registry()
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(registry)
    smol, qwen = registry["smollm2-135m"], registry["qwen2.5-coder-1.5b"]
    assert (smol.direct.style, smol.direct.max_tokens) == ("letter", 8)
    assert qwen.direct.style == "reasoning"
    assert all(len(spec.source["sha256"]) == 64 for spec in registry.values()
               if spec.format == "gguf")


def test_user_registry_overrides_and_validates(tmp_path, monkeypatch):
    extra = tmp_path / "models.yaml"
    extra.write_text("smollm2-135m:\n  family: SmolLM2\n  parameters: 135M\n  license: x\n"
                     "  format: gguf\n  source: {files: [{module: m, path: p}]}\n"
                     "  direct: {style: reasoning, max_tokens: 64}\n")
    monkeypatch.setenv("CGR_MODELS", str(extra))
    assert load_registry()["smollm2-135m"].direct.max_tokens == 64
    extra.write_text("bad:\n  family: F\n  parameters: 1B\n  license: x\n  format: gguf\n"
                     "  source: {files: []}\n  direct: {style: chatty}\n")
    with pytest.raises(RegistryError, match="bad.*direct.style"):
        load_registry()
    extra.write_text("bad:\n  family: F\n  parameters: 1B\n  licence: x\n")
    with pytest.raises(RegistryError, match="unknown key 'licence'"):
        load_registry()


def _parts_package(tmp_path, name, blobs):
    package = tmp_path / "site" / name
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for i, blob in enumerate(blobs, start=1):
        (package / "data" / f"part{i:02d}.bin").write_bytes(blob)
    return tmp_path / "site"


def test_split_parts_are_joined_once_and_verified(tmp_path, monkeypatch):
    blobs = [b"GGUF" + b"x" * 1000, b"y" * 500, b"z" * 7]
    site = _parts_package(tmp_path, "cgr_fake_parts", blobs)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CGR_CACHE_DIR", str(tmp_path / "cache"))
    digest = hashlib.sha256(b"".join(blobs)).hexdigest()
    registry_file = tmp_path / "m.yaml"
    registry_file.write_text(
        "fake:\n  family: F\n  parameters: 1M\n  license: x\n  format: gguf\n  source:\n"
        "    parts: {module: cgr_fake_parts, path: 'data/part{i:02d}.bin', count: 3}\n"
        f"    sha256: {digest}\n")
    spec = load_registry([registry_file])["fake"]
    joined = model_file(spec)
    assert joined.read_bytes() == b"".join(blobs)
    assert model_file(spec) == joined  # second call: verified marker, no rejoin

    (site / "cgr_fake_parts" / "data" / "part02.bin").write_bytes(b"tampered")
    joined.unlink()
    with pytest.raises(RegistryError, match="sha256 .* expected"):
        model_file(spec)
    assert not joined.exists()
    sys.modules.pop("cgr_fake_parts", None)


def test_missing_model_package_says_what_to_install(tmp_path):
    registry_file = tmp_path / "m.yaml"
    registry_file.write_text("ghost:\n  family: F\n  parameters: 1M\n  license: x\n"
                             "  format: gguf\n  source: {files: [{module: no_such_pkg_xyz, "
                             "path: m.gguf}]}\n")
    with pytest.raises(RegistryError, match=r"pip install 'cgr-plugin\[embedded\]'"):
        model_file(load_registry([registry_file])["ghost"])


def _size(parameters):
    return float(parameters[:-1]) * (1e6 if parameters.endswith("M") else 1e9)


def test_hub_solvers_span_small_instruct_models_of_several_families():
    registry = load_registry()
    hub = [registry[name] for name in HUB_SOLVERS]
    assert len({spec.family.split("-")[0] for spec in hub}) >= 5
    sizes = [_size(spec.parameters) for spec in hub]
    assert 135e6 <= min(sizes) < 1e9 < 3e9 < max(sizes) <= 4e9
    for spec in hub:
        assert spec.format == "hf" and "/" in spec.hf_hub_id and spec.license
        assert spec.chat_template == "tokenizer"
        assert spec.backend in spec.backends and set(spec.backends) == {"hf", "vllm"}


def test_a_hub_solver_resolves_to_its_recommended_backend_without_downloading():
    backend, spec = make_backend("qwen2.5-1.5b", {}, defaults={"device": "cuda:1", "seed": 3})
    assert isinstance(backend, LmEvalBackend) and spec.name == "qwen2.5-1.5b"
    assert backend.model == "vllm" and backend._lm is None  # nothing loaded yet
    assert backend.args == {"pretrained": "Qwen/Qwen2.5-1.5B-Instruct", "dtype": "bfloat16",
                            "gpu_memory_utilization": 0.3, "max_model_len": 4096,
                            "device": "cuda:1"}
    assert backend.chat_template is None  # the tokenizer's template, where it has one


def test_the_run_picks_the_other_backend_and_its_own_arguments_win():
    backend, _ = make_backend("qwen2.5-1.5b", {"backend": "hf", "dtype": "float16",
                                               "batch_size": 8})
    assert backend.model == "hf"
    assert backend.args == {"pretrained": "Qwen/Qwen2.5-1.5B-Instruct", "dtype": "float16",
                            "batch_size": 8}
    backend, _ = make_backend("smollm2-360m", {"backend": "causal"})  # hf's own option
    assert backend.model == "hf" and backend.args["backend"] == "causal"


def _hub_entry(tmp_path, body):
    path = tmp_path / "hub.yaml"
    path.write_text("mine:\n  family: F\n  parameters: 1B\n  license: x\n  format: hf\n"
                    + body)
    return path


@pytest.mark.parametrize("body, message", [
    ("  backends: {hf: {}}\n", "needs hf_hub_id or source.pretrained"),
    ("  hf_hub_id: o/m\n  backends: {tgi: {}}\n", "backends.tgi: not one of hf, vllm"),
    ("  hf_hub_id: o/m\n  backend: vllm\n  backends: {hf: {}}\n",
     "backend 'vllm' has no arguments under backends"),
    ("  hf_hub_id: o/m\n  chat_template: gguf\n", "chat_template of a hf entry must be one of"),
    ("  hf_hub_id: o/m\n  backends: {hf: [dtype]}\n", "backends.hf must be a mapping"),
])
def test_hub_entries_are_checked_strictly(tmp_path, body, message):
    with pytest.raises(RegistryError, match=message):
        load_registry([_hub_entry(tmp_path, body)])


def test_a_gguf_entry_cannot_name_a_hub_backend(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("g:\n  family: F\n  parameters: 1B\n  license: x\n  format: gguf\n"
                    "  source: {files: [{module: m, path: p}]}\n  backend: vllm\n")
    with pytest.raises(RegistryError, match="a gguf entry runs on llama.cpp"):
        load_registry([path])


def test_raw_prompts_for_an_entry_without_a_chat_template(tmp_path):
    path = _hub_entry(tmp_path, "  hf_hub_id: o/m\n  chat_template: none\n")
    backend, _ = make_backend("mine", {}, registry=load_registry([path]))
    assert backend.chat_template is False and backend.args == {"pretrained": "o/m"}


def test_offline_status_says_which_models_are_here(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--o--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--o--cached" / "refs").mkdir()
    (cache / "models--o--cached" / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    local = tmp_path / "folder"
    local.mkdir()
    path = tmp_path / "r.yaml"
    path.write_text("".join(
        f"{name}:\n  family: F\n  parameters: 1B\n  license: x\n  format: hf\n{extra}"
        for name, extra in [("cached", "  hf_hub_id: o/cached\n"),
                            ("absent", "  hf_hub_id: o/absent\n"),
                            ("local", f"  source: {{pretrained: '{local}'}}\n")])
        + "ghost:\n  family: F\n  parameters: 1M\n  license: x\n  format: gguf\n"
        "  source: {files: [{module: no_such_pkg_xyz, path: m.gguf}]}\n")
    registry = load_registry([path])
    assert offline_status(registry["cached"]) == (False, "in the Hugging Face cache without "
                                                         "weight files")
    (snapshot / "model.safetensors").write_bytes(b"")
    assert offline_status(registry["cached"]) == (True, "in the Hugging Face cache")
    assert offline_status(registry["absent"])[0] is False
    assert offline_status(registry["local"]) == (True, "local folder")
    assert offline_status(registry["ghost"]) == (
        False, "packages not installed (pip install 'cgr-plugin[embedded]')")
