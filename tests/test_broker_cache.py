"""The solver broker (batches calls of concurrent programs) and the response cache."""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from dataclasses import replace

import pytest

from cgr_plugin.models.backends import (
    BackendError,
    Generation,
    GenerationRequest,
    Judgement,
    LmEvalBackend,
    RetryingBackend,
    seconds_each,
)
from cgr_plugin.models.cache import CachedBackend, ResponseCache
from cgr_plugin.run.broker import BrokerError, SolverBroker


class EchoBackend:
    """Answers each prompt with itself reversed after a fixed latency per batch; logs batches."""

    name = "echo"

    def __init__(self, latency=0.0, fail=False, model="m1"):
        self.latency, self.fail, self.model = latency, fail, model
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def generate(self, requests, *, progress=False):
        self.threads.add(threading.current_thread().name)
        self.batches.append([r.prompt for r in requests])
        time.sleep(self.latency)
        if self.fail:
            raise RuntimeError("server down")
        return [Generation(r.prompt[::-1], tokens_in=1, tokens_out=1) for r in requests]

    def judge(self, prompts):
        self.batches.append(list(prompts))
        return [Judgement(0.25) if "no" in p else Judgement.failed("judge failed") if "bad" in p
                else Judgement(0.75) for p in prompts]

    def describe(self):
        return {"backend": "echo", "model": self.model}


def _programs(broker, n_programs, calls):
    answers: dict[int, list[str]] = {}
    started = threading.Barrier(n_programs)

    def program(index):
        with broker.program():
            started.wait()  # programs start together, as a pool of sandboxes does
            answers[index] = [broker.generate(GenerationRequest(f"p{index}-c{c}", 8)).text
                              for c in range(calls)]

    threads = [threading.Thread(target=program, args=(i,)) for i in range(n_programs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_calls_of_concurrent_programs_go_out_together_and_come_back_to_their_caller(concurrency):
    backend = EchoBackend(latency=0.02)
    with SolverBroker(backend, max_batch=16, wait_seconds=0.05) as broker:
        answers = _programs(broker, concurrency, calls=4)
    assert answers == {i: [f"p{i}-c{c}"[::-1] for c in range(4)] for i in range(concurrency)}
    assert broker.stats.calls == 4 * concurrency
    assert broker.stats.mean_batch >= 0.8 * concurrency
    assert backend.threads == {"cgr-broker"}  # the backend is only ever called by one thread


def test_a_batch_never_exceeds_its_limit():
    backend = EchoBackend(latency=0.01)
    with SolverBroker(backend, max_batch=3, wait_seconds=0.05) as broker:
        _programs(broker, 8, calls=2)
    assert max(len(b) for b in backend.batches) <= 3 and broker.stats.calls == 16


def test_a_lone_call_waits_at_most_the_window_for_company():
    backend = EchoBackend()
    with SolverBroker(backend, max_batch=16, wait_seconds=0.05) as broker, broker.program(), \
            broker.program():  # two programs registered, only one asks
        started = time.perf_counter()
        assert broker.generate(GenerationRequest("abc", 4)).text == "cba"
        assert time.perf_counter() - started < 2


def test_a_failing_backend_answers_each_call_with_an_error_and_the_broker_goes_on():
    backend = EchoBackend(fail=True)
    with SolverBroker(backend) as broker:
        with broker.program():
            first = broker.generate(GenerationRequest("x", 4))
        backend.fail = False
        with broker.program():
            second = broker.generate(GenerationRequest("xy", 4))
    assert first.text is None and "server down" in first.error
    assert second.text == "yx"


def test_judge_calls_are_batched_apart_from_generations():
    backend = EchoBackend()
    with SolverBroker(backend) as broker, broker.program():
        assert broker.judge("yes it is") == Judgement(0.75)
        assert broker.judge("no") == Judgement(0.25)
        assert broker.judge("bad") == Judgement(None, "judge failed")


def test_a_backend_written_for_0_1_still_judges_with_floats_and_error_strings(tmp_path):
    class OldStyle(EchoBackend):
        def judge(self, prompts):
            return [0.5 if "fine" in p else "HTTP 500" for p in prompts]

    with SolverBroker(OldStyle()) as broker, broker.program():
        assert broker.judge("fine") == Judgement(0.5)
        assert broker.judge("broken") == Judgement.failed("HTTP 500")
    cached = CachedBackend(OldStyle(), ResponseCache(tmp_path / "c.db"))
    assert cached.judge(["fine", "broken"]) == [Judgement(0.5), Judgement.failed("HTTP 500")]
    assert RetryingBackend(OldStyle(), retries=0).judge(["fine"]) == [Judgement(0.5)]


# -- response cache ------------------------------------------------------------------------------
def test_a_repeated_request_is_answered_from_the_cache(tmp_path):
    inner = EchoBackend()
    cached = CachedBackend(inner, ResponseCache(tmp_path / "c.db"))
    requests = [GenerationRequest("abc", 4), GenerationRequest("de", 4)]
    first = cached.generate(requests)
    again = CachedBackend(EchoBackend(), ResponseCache(tmp_path / "c.db"))  # a new process
    second = again.generate([GenerationRequest("de", 4), GenerationRequest("fg", 4)])
    assert [g.text for g in first] == ["cba", "ed"] and [g.text for g in second] == ["ed", "gf"]
    assert again.backend.batches == [["fg"]]  # only the miss went to the model
    assert (again.stats.hits, again.stats.misses) == (1, 1)
    assert replace(second[0], seconds=None) == first[1]  # token counts come back too
    assert second[0].seconds == 0.0  # and the hit's time is this run's: none


def test_each_request_keeps_its_own_time_and_the_unmeasured_share_the_rest():
    measured = [Generation("a", seconds=4.0), Generation("b"), Generation("c", seconds=0.0),
                Generation("d")]
    assert seconds_each(measured, 10.0) == [4.0, 3.0, 0.0, 3.0]
    assert seconds_each([Generation("a"), Generation("b")], 3.0) == [1.5, 1.5]  # all a batch's
    assert seconds_each([Generation("a", seconds=2.5)], 3.0) == [2.5]  # loading is no item's


@pytest.mark.parametrize("changed", [
    GenerationRequest("abc", 5), GenerationRequest("abc", 4, stop=("\n",)),
    GenerationRequest("abc", 4, temperature=0.7), GenerationRequest("abc", 4, seed=3)])
def test_any_change_of_decoding_misses(tmp_path, changed):
    cache = ResponseCache(tmp_path / "c.db")
    CachedBackend(EchoBackend(), cache).generate([GenerationRequest("abc", 4)])
    other = CachedBackend(EchoBackend(), cache)
    other.generate([changed])
    assert other.stats.hits == 0


def test_another_model_misses(tmp_path):
    cache = ResponseCache(tmp_path / "c.db")
    CachedBackend(EchoBackend(model="m1"), cache).generate([GenerationRequest("abc", 4)])
    other = CachedBackend(EchoBackend(model="m2"), cache)
    other.generate([GenerationRequest("abc", 4)])
    assert other.stats.hits == 0


def test_failures_are_not_cached(tmp_path):
    cache = ResponseCache(tmp_path / "c.db")
    failing = CachedBackend(EchoBackend(fail=True), cache)
    with pytest.raises(RuntimeError):
        failing.generate([GenerationRequest("abc", 4)])
    assert len(cache) == 0
    judged = CachedBackend(EchoBackend(), cache)
    assert judged.judge(["bad one", "fine"]) == [Judgement.failed("judge failed"), Judgement(0.75)]
    again = CachedBackend(EchoBackend(), cache)
    assert again.judge(["bad one", "fine"]) == [Judgement.failed("judge failed"), Judgement(0.75)]
    assert (again.stats.hits, again.stats.misses) == (1, 1)


def test_judgements_are_stored_as_bare_numbers_so_0_1_cache_files_still_answer(tmp_path):
    CachedBackend(EchoBackend(), ResponseCache(tmp_path / "c.db")).judge(["fine"])
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert [v for (v,) in db.execute("SELECT value FROM responses")] == ["0.75"]
        db.execute("UPDATE responses SET value = '0.125'")  # as 0.1 wrote P(yes): a number
    again = CachedBackend(EchoBackend(), ResponseCache(tmp_path / "c.db"))
    assert again.judge(["fine"]) == [Judgement(0.125)] and again.stats.hits == 1


# -- retries -------------------------------------------------------------------------------------
class FlakyBackend(EchoBackend):
    """Fails its first ``failures`` calls: as error values, or by raising."""

    def __init__(self, failures, raising=False):
        super().__init__()
        self.failures, self.raising, self.calls = failures, raising, 0

    def generate(self, requests, *, progress=False):
        self.calls += 1
        if self.calls <= self.failures:
            if self.raising:
                raise ConnectionError("connection reset")
            return [Generation(None, "HTTP 503") for _ in requests]
        return super().generate(requests)

    def judge(self, prompts):
        self.calls += 1
        if self.calls <= self.failures:
            raise TimeoutError("read timed out")
        return super().judge(prompts)


@pytest.mark.parametrize("raising", [False, True])
def test_a_transient_failure_is_retried_into_an_answer(raising):
    flaky = FlakyBackend(failures=2, raising=raising)
    backend = RetryingBackend(flaky, retries=2, backoff=0.01)
    out = backend.generate([GenerationRequest("ab", 4), GenerationRequest("cd", 4)])
    assert [g.text for g in out] == ["ba", "dc"] and flaky.calls == 3 and backend.retried == 4


def test_a_lasting_failure_becomes_an_error_value_naming_the_retries():
    backend = RetryingBackend(FlakyBackend(failures=99), retries=2, backoff=0.01)
    (out,) = backend.generate([GenerationRequest("ab", 4)])
    assert out.text is None and out.error == "HTTP 503 (after 2 retries)"
    judged = RetryingBackend(FlakyBackend(failures=99), retries=1, backoff=0.01)
    assert judged.judge(["x"]) == [Judgement.failed("TimeoutError: read timed out "
                                                    "(after 1 retries)")]


def test_a_prompt_too_long_for_the_context_is_not_retried():
    class TooLong(EchoBackend):
        def generate(self, requests, *, progress=False):
            self.batches.append(1)
            return [Generation(None, "ValueError: Requested tokens (3000) exceed context window "
                                     "of 2048") for _ in requests]

    inner = TooLong()
    (out,) = RetryingBackend(inner, retries=3, backoff=5).generate([GenerationRequest("x", 4)])
    assert "exceed context window" in out.error and len(inner.batches) == 1


def test_a_backend_that_cannot_be_set_up_is_an_error_not_a_retried_item():
    class Missing(EchoBackend):
        def generate(self, requests, *, progress=False):
            raise BackendError("hf: a package it needs is missing: No module named 'x'")

    with pytest.raises(BackendError, match="package it needs is missing"):
        RetryingBackend(Missing(), retries=3, backoff=5).generate([GenerationRequest("x", 4)])


# -- retries never stack, and never wait on the dispatcher ---------------------------------------
class SelfRetrying(FlakyBackend):
    """A backend whose client retries by itself, as lm-eval's API models do."""

    retries_itself = True


def test_a_backend_that_retries_by_itself_gets_no_retries_on_top():
    inner = SelfRetrying(failures=99)
    (out,) = RetryingBackend(inner, retries=3, backoff=5).generate([GenerationRequest("x", 4)])
    assert out.error == "HTTP 503" and inner.calls == 1


def test_lm_eval_api_models_are_known_to_retry_by_themselves():
    assert LmEvalBackend("local-chat-completions", {"model": "m"}).retries_itself
    assert LmEvalBackend("local-completions", {"model": "m"}).retries_itself
    assert not LmEvalBackend("dummy", {}).retries_itself


def test_through_the_broker_a_transient_failure_is_retried_into_an_answer():
    flaky = FlakyBackend(failures=1)
    retrying = RetryingBackend(flaky, retries=2, backoff=0.01)
    with SolverBroker(retrying) as broker, broker.program():
        assert broker.generate(GenerationRequest("ab", 4)).text == "ba"
    assert flaky.calls == 2 and retrying.retried == 1
    lasting = RetryingBackend(FlakyBackend(failures=99), retries=2, backoff=0.01)
    with SolverBroker(lasting) as broker, broker.program():
        assert broker.generate(GenerationRequest("ab", 4)).error == "HTTP 503 (after 2 retries)"
    assert lasting.backend.calls == 3


class FailsFirstCallOf(EchoBackend):
    """HTTP 503 for the first call of prompts starting with ``prefix``, answers otherwise."""

    def __init__(self, prefix):
        super().__init__()
        self.prefix, self.failed = prefix, set()

    def generate(self, requests, *, progress=False):
        out = []
        for r in requests:
            if r.prompt.startswith(self.prefix) and r.prompt not in self.failed:
                self.failed.add(r.prompt)
                out.append(Generation(None, "HTTP 503"))
            else:
                out.append(super().generate([r])[0])
        return out


def test_one_programs_backoff_does_not_hold_back_another_programs_calls():
    backend = RetryingBackend(FailsFirstCallOf("slow"), retries=1, backoff=3.0)
    done: dict[str, float] = {}
    with SolverBroker(backend, max_batch=4, wait_seconds=0.01) as broker:
        def program(prompt, delay):
            with broker.program():
                time.sleep(delay)
                assert broker.generate(GenerationRequest(prompt, 4)).text == prompt[::-1]
                done[prompt] = time.perf_counter() - started

        started = time.perf_counter()
        threads = [threading.Thread(target=program, args=("slow", 0.0)),
                   threading.Thread(target=program, args=("fast", 0.3))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert done["fast"] < 2.0 <= 3.0 <= done["slow"]  # fast went while slow waited out 3 s
    assert backend.backend.threads == {"cgr-broker"}


# -- a dispatcher that dies fails every call instead of leaving programs blocked ---------------
class DiesOnPrompt(EchoBackend):
    """Answers until it sees ``fatal``, then raises past ``Exception`` (as sys.exit does)."""

    def generate(self, requests, *, progress=False):
        if any(r.prompt == "fatal" for r in requests):
            time.sleep(0.2)  # the other programs' calls are queued meanwhile
            sys.exit("backend bug")
        return super().generate(requests)


def test_a_dead_dispatcher_fails_pending_and_later_calls_with_the_reason():
    outcomes: dict[str, str] = {}
    with SolverBroker(DiesOnPrompt(), max_batch=1, wait_seconds=0) as broker:
        def program(prompt):
            with broker.program():
                try:
                    outcomes[prompt] = broker.generate(GenerationRequest(prompt, 4)).text
                except BrokerError as err:
                    outcomes[prompt] = str(err)

        first = threading.Thread(target=program, args=("fatal",), daemon=True)
        first.start()
        time.sleep(0.05)
        others = [threading.Thread(target=program, args=(f"p{i}",), daemon=True)
                  for i in range(3)]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join(timeout=10)
            assert not thread.is_alive()  # nobody is left waiting
        started = time.perf_counter()
        with pytest.raises(BrokerError, match="stopped: SystemExit: backend bug"):
            broker.judge("after the death")
        assert time.perf_counter() - started < 1
    assert set(outcomes) == {"fatal", "p0", "p1", "p2"}
    assert all("the solver broker stopped: SystemExit: backend bug" in text
               for text in outcomes.values())
