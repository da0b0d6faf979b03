"""Two data-parallel ranks on CPU (torchrun, gloo) give the same records as one process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cgr_plugin.record import CGRRecord

from .conftest import needs_llama, run_cli
from .test_e2e_cli import _samples

pytestmark = [pytest.mark.slow, needs_llama]

BIN = Path(sys.executable).parent


def _records(out: Path) -> dict[str, tuple]:
    records = [CGRRecord.from_json(s["resps"][0][0]) for s in _samples(out, "cgr_arc_easy")]
    return {r.item_id: (r.direct.answer, r.direct.raw, r.direct.status) for r in records}


@pytest.mark.skipif(not (BIN / "torchrun").exists(), reason="needs torch's torchrun")
def test_two_cpu_ranks_match_one_process(tmp_path):
    args = ["--model", "cgr", "--model_args", "channels=direct", "--tasks", "cgr_arc_easy",
            "--limit", "6", "--log_samples", "--confirm_run_unsafe_code"]
    single = run_cli("cgr-eval", *args, "--output_path", "one", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    ranks = run_cli(str(BIN / "torchrun"), "--nproc_per_node", "2", str(BIN / "cgr-eval"),
                    *args, "--output_path", "two", cwd=tmp_path)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert ranks.stderr.count("Initializing cgr model") == 2  # one model per rank
    assert _records(tmp_path / "one") == _records(tmp_path / "two")
