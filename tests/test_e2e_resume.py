"""kill -9 in the middle of a run, then the same command again: finished items are not redone."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgr_plugin.record import CGRRecord

from .conftest import needs_llama, run_cli
from .test_e2e_cli import _samples

pytestmark = [pytest.mark.slow, needs_llama]


def _command(journal: Path, out: Path) -> list[str]:
    args = "channels=direct,chunk_size=2" + (f",journal={journal}" if journal else "")
    return ["cgr-eval", "--model", "cgr", "--model_args", args, "--tasks", "cgr_arc_easy",
            "--limit", "12", "--output_path", str(out), "--log_samples",
            "--confirm_run_unsafe_code"]


def _rows(journal: Path) -> int:
    try:
        return sqlite3.connect(journal).execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


def _answers(out: Path) -> dict[str, str | None]:
    records = [CGRRecord.from_json(s["resps"][0][0]) for s in _samples(out, "cgr_arc_easy")]
    return {r.item_id: r.direct.answer for r in records}


def test_interrupted_run_resumes_without_redoing_finished_items(tmp_path):
    journal = tmp_path / "journal.db"
    exe = str(Path(sys.executable).parent / "cgr-eval")
    command = _command(journal, tmp_path / "out")
    proc = subprocess.Popen([exe, *command[1:]], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while _rows(journal) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _rows(journal)
    assert 2 <= done < 12, done

    resumed = run_cli(*command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    taken = re.search(r"cgr: (\d+) of 12 items taken from the journal", resumed.stderr)
    assert taken and int(taken.group(1)) >= done
    # the journal's file also caches responses: calls finished in the killed chunk are not redone
    assert re.search(r"response cache \(.*journal\.db\), solver: \d+ hits, \d+ misses",
                     resumed.stderr)
    assert _rows(journal) == 12

    fresh = run_cli(*_command(None, tmp_path / "fresh"), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert _answers(tmp_path / "out") == _answers(tmp_path / "fresh")


def test_a_changed_setting_does_not_reuse_the_journal(tmp_path):
    journal = tmp_path / "journal.db"
    first = run_cli(*_command(journal, tmp_path / "a"), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    changed = _command(journal, tmp_path / "b")
    changed[4] += ",direct_max_tokens=6"
    second = run_cli(*changed, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "taken from the journal" not in second.stderr
    assert _rows(journal) == 24
