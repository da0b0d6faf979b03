"""A generator behind an OpenAI-compatible server (how large generators are served: vLLM serve,
llama.cpp server, TGI), reached through lm-eval's own local-chat-completions client."""

from __future__ import annotations

import gc
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cgr_plugin.data.items import MCQAItem

from .conftest import has_module, needs_llama

pytestmark = [pytest.mark.slow, needs_llama,
              pytest.mark.skipif(not has_module("tenacity"), reason="needs cgr-plugin[api]")]
PROGRAM = ('```python\nGENERATOR_ANSWER = "B"\nDIFFICULTY = "easy"\n\n'
           'def solve(item, solver):\n    return solver.choose()\n```')
ITEMS = [MCQAItem(id=f"q{i}", dataset="toy", question=f"What is 1 + {i}?",
                  choices=(str(i), str(i + 1), str(i + 2)), answer="B") for i in range(3)]


@pytest.fixture
def server():
    """A chat-completions endpoint that writes PROGRAM, or fails with HTTP 503 when told to."""
    state = {"requests": [], "fail": False}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append(body)
            if state["fail"]:
                self.send_response(503)
                self.end_headers()
                return
            data = json.dumps({"id": "c", "object": "chat.completion", "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                   "role": "assistant", "content": PROGRAM}}],
                               "usage": {"prompt_tokens": 9, "completion_tokens": 30}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/v1/chat/completions"
    yield state
    httpd.shutdown()
    # lm-eval's async client leaves failed tasks behind; their finalizers print tracebacks,
    # which on CPython 3.11 parse source and must not run inside a later ast.parse.
    gc.collect()


def _lm(server, **extra):
    import cgr_plugin
    from cgr_plugin.run.model import CGRLM

    cgr_plugin.register()
    return CGRLM(generator="local-chat-completions", **{
        "generator.model": "big-coder", "generator.base_url": server["url"],
        "generator.num_concurrent": 2, "generator.max_retries": 1, **extra})


def test_programs_written_by_a_served_generator_run_against_the_local_solver(server):
    records = _lm(server)._run_items(ITEMS)
    assert {r.generator for r in records} == {"local-chat-completions:big-coder"}
    assert [(r.assisted.status, r.generator_side.answer) for r in records] == [("ok", "B")] * 3
    assert all(r.assisted.solver_calls == 1 for r in records)
    asked = [m["messages"][-1]["content"] for m in server["requests"]]
    assert len(asked) == 3 and all("What is 1 +" in text for text in asked)
    assert {m["model"] for m in server["requests"]} == {"big-coder"}


def test_a_failing_server_is_retried_by_lm_eval_alone_then_recorded_per_item(server):
    server["fail"] = True
    lm = _lm(server, retries=1, retry_backoff=0.1, **{"generator.max_retries": 2})
    records = lm._run_items(ITEMS)
    assert {r.assisted.status for r in records} == {"generator_error"}
    assert all("503" in r.assisted.error for r in records)
    assert {r.direct.status for r in records} <= {"ok", "invalid"}  # the solver is unaffected
    # lm-eval's client tries the batch max_retries=2 times, then each request once alone to
    # find the bad one; cgr's retries=1 does not multiply that (it would be 24 requests)
    assert len(ITEMS) <= len(server["requests"]) <= 2 * len(ITEMS) + len(ITEMS)
