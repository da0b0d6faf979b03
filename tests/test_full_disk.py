"""A disk that fills up mid-run costs resumability and caching, never the run."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # files stop at 64 KiB
from cgr_plugin.run.journal import Journal
from cgr_plugin.models.cache import ResponseCache
journal = Journal(sys.argv[1] + "/j.db", "identity")
cache = ResponseCache(sys.argv[1] + "/c.db")
for i in range(300):
    journal.put(f"k{i}", "x" * 1000)
    cache.put_many({f"k{i}": {"text": "y" * 1000}})
print(journal.write_failures > 0, cache.write_failures > 0, journal.get("k0") is not None)
"""


def test_journal_and_cache_survive_a_full_disk(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["True", "True", "True"]
    assert "cannot write the journal" in run.stderr and run.stderr.count("cannot write") == 2
