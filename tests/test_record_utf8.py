"""A record is valid UTF-8 whatever its program printed, and one that cannot be stored never
stops a run (issue 12, item 4 outside the sandbox)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cgr_plugin.record import CGRRecord, ChannelResult, valid_utf8
from cgr_plugin.run.journal import Journal

from .conftest import REPO

STRAY = "lone \ud800 high, \udcff escaped byte"
ITEM = {"id": "q1", "dataset": "toy", "question": "2 + 2?", "choices": ["3", "4"],
        "answer": "B"}


def _record(text: str = STRAY) -> CGRRecord:
    return CGRRecord(item=ITEM, solver="s", assisted=ChannelResult(
        status="runtime_error", output=text, error=f"ValueError: {text}", answer=None))


def test_a_record_with_lone_surrogates_is_valid_utf8_json():
    line = _record().to_json()
    line.encode("utf-8")  # lm-eval's sample writer encodes it like this
    assisted = CGRRecord.from_json(line).assisted
    assert assisted.output == "lone \ufffd high, \ufffd escaped byte"
    assert assisted.error == "ValueError: lone \ufffd high, \ufffd escaped byte"
    assert valid_utf8("naïve ✓") == "naïve ✓"  # valid text is left alone


def test_the_journal_stores_a_record_with_lone_surrogates_and_the_run_goes_on(tmp_path):
    journal = Journal(tmp_path / "j.db", "identity")
    journal.put("k1", json.dumps({"output": STRAY}, ensure_ascii=False))
    journal.put("k2", _record().to_json())
    assert journal.write_failures == 0 and len(journal) == 2
    assert json.loads(journal.get("k1"))["output"] == "lone \ufffd high, \ufffd escaped byte"


def test_a_journal_that_refuses_every_write_logs_once_and_never_raises(tmp_path, caplog):
    journal = Journal(tmp_path / "j.db", "identity")
    journal._db.close()  # every write now fails inside SQLite
    for i in range(3):
        journal.put(f"k{i}", "{}")
    assert journal.write_failures == 3
    assert sum("cannot write the journal" in r.message for r in caplog.records) == 1


def test_cgr_exec_prints_valid_utf8_json_whatever_the_program_printed(tmp_path):
    (tmp_path / "program.py").write_text(
        "def solve(item, solver):\n"
        "    print('lone \\ud800 high, \\udcff escaped byte')\n"
        "    raise ValueError('bad \\ud800')\n", encoding="utf-8")
    (tmp_path / "item.json").write_text(json.dumps(ITEM), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "cgr_plugin", "exec",
                           str(tmp_path / "program.py"), "--item", str(tmp_path / "item.json")],
                          capture_output=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assisted = CGRRecord.from_json(done.stdout.decode("utf-8")).assisted  # strict UTF-8
    assert assisted.status == "runtime_error"
    assert "\ufffd" in assisted.output and "bad \ufffd" in assisted.error


def test_an_unknown_call_kind_is_echoed_short_in_the_reply_and_the_trace():
    """A program's 1 MB call kind must not come back as a 1 MB reply or sit in the record."""
    from cgr_plugin.data.items import MCQAItem
    from cgr_plugin.run.assisted import SolverCalls

    item = MCQAItem(id="q1", dataset="toy", question="2 + 2?", choices=("3", "4"), answer="B")
    calls = SolverCalls(item, solver=None, budget=2, direct_prompt=str, direct_max_tokens=8)
    reply = calls({"type": "call", "kind": "x" * 100_000})
    assert len(reply["error"]) < 120 and len(calls.trace[0]["error"]) < 120
