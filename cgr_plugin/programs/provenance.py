"""Where a program's answer comes from, decided from counterfactual re-runs of the program.

The static audits read a program's text; they miss disguised hard-coding (``item.letters[2]``,
``chr(67)``, solver calls whose results are thrown away) and flag honest computation. Here the
program's *behaviour* decides: it runs again under a canned solver (``solver`` re-runs, one per
seed), with its options permuted (``item`` re-runs, under the canned solver too) and with the
real run's replies replayed (``replay``: the program is deterministic). ``classify`` turns the
answers into one class with a reason; ``run/provenance.py`` makes the re-runs.

Classes (a program's answer ``a``, the letter the real run returned, with option text ``t``):

- ``solver_dependent``: some canned solver gave another answer than ``a`` (or than another seed);
- ``computed_from_item``: every canned solver gave ``a``, and with the options permuted the
  program returns the option whose text is ``t``, at its new letter, every time;
- ``constant``: every canned solver gave ``a``, and with the options permuted it still returns
  the letter ``a`` (now another option's text): the same letter whatever the solver and the
  option order, hard-coded in effect;
- ``mixed``: every canned solver gave ``a``, but under permuted options the answer follows
  neither its letter nor its text on every permutation;
- ``unknown``: the evidence is missing or cannot be trusted: a re-run could not be made (the
  sandbox failed, a re-run ran out of time), the replay of the real replies gave another answer
  (the program is not deterministic), or the item has one option (nothing to permute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..record import PROVENANCE_CLASSES

__all__ = ["PROVENANCE_CLASSES", "Rerun", "classify"]

# re-run statuses that are no evidence about the program's answer
UNTRUSTED = {"sandbox_error": "the sandbox could not re-run the program",
             "timeout": "a re-run ran out of its time limit"}


@dataclass(frozen=True)
class Rerun:
    """One re-run's outcome: ``answer`` is a letter of that run's item (status ok) or None."""

    kind: str  # "solver", "item" or "replay"
    seed: int | None
    status: str
    answer: str | None = None
    text: str | None = None  # the answer's option text in that run's item
    order: str | None = None  # item re-runs: the original letters in their new order ("CAB")
    error: str | None = None

    @property
    def outcome(self) -> str:
        """The answer, or the status in angle brackets when there is none (``<uninformative>``)."""
        return self.answer if self.status == "ok" and self.answer else f"<{self.status}>"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and k != "kind"}


def _result(name: str, reason: str, letter: str, text: str | None,
            reruns: Sequence[Rerun]) -> dict[str, Any]:
    evidence: dict[str, Any] = {"answer": letter, "text": text}
    for kind in ("solver", "item"):
        evidence[kind] = [r.to_dict() for r in reruns if r.kind == kind]
    replay = [r.to_dict() for r in reruns if r.kind == "replay"]
    evidence["replay"] = replay[0] if replay else None
    return {"class": name, "reason": reason, "evidence": evidence}


def classify(letter: str, text: str | None, reruns: Sequence[Rerun]) -> dict[str, Any]:
    """``{"class", "reason", "evidence"}`` for a program whose real run returned ``letter``
    (option text ``text``), from its re-runs; see the module docstring for the classes."""
    def result(name: str, reason: str) -> dict[str, Any]:
        return _result(name, reason, letter, text, reruns)

    for rerun in reruns:
        if rerun.status in UNTRUSTED:
            return result("unknown", f"{UNTRUSTED[rerun.status]} ({rerun.kind} re-run, seed "
                                     f"{rerun.seed}{': ' + rerun.error if rerun.error else ''})")
    replay = [r for r in reruns if r.kind == "replay"]
    if replay and replay[0].outcome != letter:
        return result("unknown", f"not deterministic: the real run's replies, replayed, gave "
                                 f"{replay[0].outcome} instead of {letter}")
    solver = [r for r in reruns if r.kind == "solver"]
    if not solver:
        return result("unknown", "no solver re-run was made")
    changed = [r for r in solver if r.outcome != letter]
    if changed:
        shown = ", ".join(f"seed {r.seed}: {r.outcome}" for r in changed)
        return result("solver_dependent", f"canned solvers changed the answer {letter} ({shown})")
    item = [r for r in reruns if r.kind == "item"]
    if not item:
        return result("unknown", "the item has one option: nothing to permute")
    if all(r.outcome == letter for r in item):
        return result("constant", f"{letter} under every canned solver and every option order "
                                  f"({len(solver)} solver and {len(item)} permuted re-runs)")
    if text is not None and all(r.status == "ok" and r.text == text for r in item):
        return result("computed_from_item", f"the option {text!r:.60} under every canned solver, "
                                            "at its new letter whenever the options moved")
    shown = ", ".join(f"order {r.order}: {r.outcome}" for r in item)
    return result("mixed", f"{letter} under every canned solver, but with the options permuted "
                           f"the answer followed neither its letter nor its text ({shown})")
