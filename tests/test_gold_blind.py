"""No field a program receives predicts the gold above chance, for every shipped dataset.

What a program sees is built by the code the sandbox run uses (``item_for_program``,
``program_seed``); the attacks use only public data: the shipped recipes (shuffle seeds and
how ids are formed), the real ids of the dataset, and the seen fields. Each attack names a
letter per item; its hits must stay under a binomial bound at chance (1/choices per item).
Each attack is first shown to work on what programs saw before (the real id and crc32 seed).
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Callable

import pytest
import yaml

from cgr_plugin._paths import DATA_DIR
from cgr_plugin.data.items import MCQAItem
from cgr_plugin.data.loader import read_items
from cgr_plugin.prompts import GENERATOR_FAMILIES, generator_template, render
from cgr_plugin.run.item_view import item_for_program, item_for_prompt, opaque_id, program_seed

from .conftest import REPO

MANIFEST = json.loads((DATA_DIR / "MANIFEST.json").read_text(encoding="utf-8"))
RECIPES = yaml.safe_load((DATA_DIR / "recipes.yaml").read_text(encoding="utf-8"))
PUBLIC_SEEDS = sorted({int(r["fields"]["shuffle_seed"]) for r in RECIPES.values()
                       if (r.get("fields") or {}).get("shuffle_seed") is not None})
RUN_SEEDS = (0, 1, 1234)  # model_args seed= values a user is likely to pass
Seen = tuple[dict, int]  # (the item as the program gets it, its RNG seed)


def _items(name: str) -> list[MCQAItem]:
    return read_items(DATA_DIR / MANIFEST[name]["file"])


def _seen(item: MCQAItem) -> Seen:
    return item_for_program(item), program_seed(0, item)


def _seen_before(item: MCQAItem) -> Seen:
    """What programs got before: the real id and crc32(seed:id)."""
    view = {**item_for_program(item), "id": item.id}
    return view, zlib.crc32(f"0:{item.id}".encode())


def _unshuffle(view: dict, item_id: str) -> str | None:
    """The recipes' public shuffle put upstream's first option (the gold) here."""
    order = list(range(len(view["choices"])))
    random.Random(f"{PUBLIC_SEEDS[0]}:{item_id}").shuffle(order)
    return view["letters"][order.index(0)]


def recompute_shuffle(view: dict, seed: int, ids: dict) -> str | None:
    return _unshuffle(view, view["id"]) if PUBLIC_SEEDS else None


def enumerate_ids(view: dict, seed: int, ids: dict) -> str | None:
    """Find the real id from the seen id or seed among every id of the dataset, then look the
    gold up in the public data."""
    found = ids["by_id"].get(view["id"]) or ids["by_seed"].get(seed)
    return found.answer if found else None


def echo_fields(view: dict, seed: int, ids: dict) -> str | None:
    """A metadata, context or payload value that is a letter or an option's text."""
    values = [*view["metadata"].values(), view["context"], view["payload"]]
    if isinstance(view["payload"], dict):
        values += list(view["payload"].values())
    for value in values:
        for letter, text in zip(view["letters"], view["choices"], strict=True):
            if isinstance(value, str) and value.strip() in (letter, text.strip()):
                return letter
    return None


ATTACKS: dict[str, Callable[[dict, int, dict], str | None]] = {
    "recompute the public shuffle from the seen id": recompute_shuffle,
    "enumerate real ids against the seen id and seed": enumerate_ids,
    "read the gold from metadata, context or payload": echo_fields,
}


def _public_ids(items: list[MCQAItem]) -> dict:
    by_seed = {}
    for item in items:
        for run_seed in RUN_SEEDS:
            by_seed[zlib.crc32(f"{run_seed}:{item.id}".encode())] = item
    return {"by_id": {item.id: item for item in items}, "by_seed": by_seed}


def _hits(items: list[MCQAItem], attack: Callable, see: Callable[[MCQAItem], Seen]) -> int:
    public = _public_ids(items)
    guess = random.Random(7)  # an attack with nothing to go on guesses
    hits = 0
    for item in items:
        view, seed = see(item)
        letter = attack(view, seed, public) or guess.choice(view["letters"])
        hits += letter == item.answer
    return hits


def _chance_bound(items: list[MCQAItem]) -> float:
    """Hits of a guess independent of the gold stay below this (mean + 5 sd, Poisson binomial)."""
    ps = [1 / len(item.choices) for item in items]
    return sum(ps) + 5 * math.sqrt(sum(p * (1 - p) for p in ps)) + 1


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
@pytest.mark.parametrize("dataset", sorted(MANIFEST))
def test_no_field_a_program_receives_predicts_the_gold(dataset, attack):
    items = _items(dataset)
    hits = _hits(items, ATTACKS[attack], _seen)
    bound = _chance_bound(items)
    assert hits <= bound, (f"{dataset}: '{attack}' found {hits}/{len(items)} golds "
                           f"(chance bound {bound:.0f})")


def test_the_attacks_recovered_the_gold_from_what_programs_saw_before():
    """The attacks are real: on the real id and crc32 seed, the shuffled datasets fall."""
    shuffled = [name for name, recipe in RECIPES.items() if name in MANIFEST
                and (recipe.get("fields") or {}).get("shuffle_seed") is not None]
    assert shuffled, "no shipped dataset is shuffled: the first attack tests nothing"
    for name in shuffled:
        items = _items(name)
        assert _hits(items, recompute_shuffle, _seen_before) == len(items), name
    items = _items("arc_easy")
    assert _hits(items, enumerate_ids, _seen_before) == len(items)


def test_the_program_id_and_seed_are_stable_and_reveal_nothing_of_the_real_id():
    item = _items("truthfulqa_mc1")[0]
    view, seed = _seen(item)
    assert view["id"] == opaque_id(item) and seed == program_seed(0, item)  # deterministic
    assert item.id not in json.dumps(view) and "answer" not in view
    assert program_seed(1, item) != seed  # model_args seed= still changes tie-breaks
    other = _items("truthfulqa_mc1")[1]
    assert opaque_id(other) != view["id"]


def test_the_generator_prompt_never_shows_the_real_id(tmp_path):
    """Even a user template that prints item.id gets the opaque one."""
    item = _items("sciq")[3]
    (tmp_path / "generator_cgr.j2").write_text("id={{ item.id }}", encoding="utf-8")
    assert render("generator_cgr.j2", [str(tmp_path)], item=item_for_prompt(item),
                  budget=4) == f"id={opaque_id(item)}"
    for family in GENERATOR_FAMILIES:
        shipped = render(generator_template(family), item=item_for_prompt(item), budget=4)
        assert item.id not in shipped and opaque_id(item) not in shipped
    for template in (REPO / "templates").glob("*.j2"):
        assert "item.id" not in template.read_text(encoding="utf-8"), template.name


SHUFFLE_ATTACK = f'''
import random

def solve(item, solver):
    order = list(range(len(item.choices)))
    random.Random("{PUBLIC_SEEDS[0] if PUBLIC_SEEDS else 0}:" + item.id).shuffle(order)
    return item.letters[order.index(0)]
'''


class _NoSolver:
    name = "none"

    def generate(self, requests, *, progress=False):
        raise AssertionError("the attack never asks the solver")

    def judge(self, prompts):
        raise AssertionError("the attack never asks the solver")


def test_a_program_in_the_sandbox_cannot_recompute_the_shuffle():
    """Through generator output -> extraction -> sandbox, as a run does (60 TruthfulQA items)."""
    from cgr_plugin.run.assisted import AssistedSettings, run_item_program
    from cgr_plugin.sandbox.runner import SandboxLimits, isolation_level

    settings = AssistedSettings(
        budget=0, sandbox="bwrap" if isolation_level() != "process" else "process",
        limits=SandboxLimits.for_timeout(10))
    items = _items("truthfulqa_mc1")[:60]
    answers = [run_item_program(f"```python\n{SHUFFLE_ATTACK}\n```", item, solver=_NoSolver(),
                                settings=settings, direct_prompt=lambda it: it.question,
                                direct_max_tokens=8)[0] for item in items]
    assert all(a.status == "ok" for a in answers), {a.status: a.error for a in answers}
    hits = sum(a.answer == item.answer for a, item in zip(answers, items, strict=True))
    assert hits <= _chance_bound(items), f"{hits}/60 golds recovered in the sandbox"


def test_a_user_dataset_with_shuffle_seed_is_protected_by_construction(tmp_path):
    """Gold listed first upstream, shuffled with the YAML's own public seed."""
    from cgr_plugin.tasks.dataset import load_mcqa_dataset

    rows = [{"q": f"Question {i}?", "options": [f"right {i}", f"w{i}a", f"w{i}b", f"w{i}c"],
             "gold": 0} for i in range(400)]
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "mine.yaml").write_text(
        "task: mine\nclass: !function cgr_plugin.tasks.task.CGRTask\ndataset_kwargs:\n"
        "  data_files: mine.jsonl\n  fields: {question: q, choices: options, answer: gold,\n"
        "           answer_format: index, shuffle_seed: 99}\n")
    docs = load_mcqa_dataset(config_source=str(tmp_path / "mine.yaml"))["test"]
    items = [MCQAItem.from_doc(doc) for doc in docs]

    def attack(view: dict, item_id: str) -> str:
        order = list(range(len(view["choices"])))
        random.Random(f"99:{item_id}").shuffle(order)
        return view["letters"][order.index(0)]

    assert sum(attack(item_for_program(it), it.id) == it.answer for it in items) == 400
    hits = sum(attack(view, view["id"]) == it.answer
               for it in items for view in [item_for_program(it)])
    assert hits <= _chance_bound(items), f"{hits}/400"
