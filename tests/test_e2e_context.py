"""A prompt too long for a real model's context: the real backends count it, refuse to send it
and say so, and a cgr-eval run records it in every channel instead of failing or cutting."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from cgr_plugin.models.backends import GenerationRequest, make_backend

from .conftest import has_module, needs_llama, run_cli

pytestmark = pytest.mark.slow

LONG = "Count the words in this sentence. " * 60  # well over 256 tokens


@needs_llama
def test_llama_cpp_refuses_what_does_not_fit_and_answers_what_does():
    backend, _ = make_backend("smollm2-135m", {"n_ctx": 256})
    long_answer, short_answer, tight = backend.generate([
        GenerationRequest(LONG, 8), GenerationRequest("Say yes.", 8),
        GenerationRequest("Say yes.", 250)])
    assert long_answer.too_long and long_answer.text is None
    assert long_answer.tokens_in > 256
    assert (f"{long_answer.tokens_in} prompt tokens + 8 for the reply exceed its context of 256 "
            "tokens") in long_answer.error
    assert short_answer.error is None and short_answer.text is not None
    # a prompt that fits but leaves less room than the reply asks is refused too, not shortened
    assert tight.too_long and "250 for the reply" in tight.error


@pytest.mark.skipif(not has_module("transformers"), reason="needs the hf extra")
def test_an_hf_model_is_not_cut_to_its_max_length(tmp_path):
    from cgr_plugin.models.backends import LmEvalBackend
    from cgr_plugin.testing import tiny_llama

    path = tiny_llama(tmp_path / "tiny")
    backend = LmEvalBackend("hf", {"pretrained": str(path), "max_length": 64,
                                   "dtype": "float32", "device": "cpu"})
    long_answer, short_answer = backend.generate([GenerationRequest(LONG, 4),
                                                  GenerationRequest("Hi", 4)])
    assert long_answer.too_long and "exceed its context of 64 tokens" in long_answer.error
    assert short_answer.error is None


@needs_llama
def test_cgr_eval_records_too_long_prompts_in_the_direct_and_generator_channels(tmp_path):
    run = run_cli("cgr-eval", "--model", "cgr", "--model_args",
                  "generator=smollm2-135m,n_ctx=512", "--tasks", "cgr_timeseriesexam",
                  "--limit", "1", "--output_path", "out", "--log_samples",
                  "--confirm_run_unsafe_code", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    files = glob.glob(str(tmp_path / "out" / "**" / "samples_cgr_timeseriesexam_*.jsonl"),
                      recursive=True)
    sample = json.loads(Path(files[0]).read_text().splitlines()[0])
    channels = json.loads(sample["resps"][0][0])["channels"]
    for name in ("direct", "generator"):
        assert channels[name]["status"] == "prompt_too_long", name
        assert "exceed its context of 512 tokens" in channels[name]["error"], name
    assert channels["assisted"]["status"] == "generator_error"  # no program came
    assert channels["assisted"]["error"] == channels["generator"]["error"]
    assert channels["direct"]["prompt_shortened"].startswith("payload: ")
    assert "ts (128 values)" in channels["direct"]["prompt"]
