import hashlib
import sys

import pytest

from cgr_plugin.models.registry import RegistryError, load_registry, model_file


def test_packaged_registry_has_the_embedded_models():
    registry = load_registry()
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(registry)
    smol, qwen = registry["smollm2-135m"], registry["qwen2.5-coder-1.5b"]
    assert (smol.direct.style, smol.direct.max_tokens) == ("letter", 8)
    assert qwen.direct.style == "reasoning"
    assert all(len(spec.source["sha256"]) == 64 for spec in registry.values())


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
