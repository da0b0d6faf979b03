"""The project's published studies (docs/results/STUDY/) are what their study produced: each
shipped program package matches its manifest, each finished cell's done marker names a shipped
package, and the report's program sets carry the packages' digests. A hand edit of any of
these files, or a package re-exported without its cells, fails here. No model needed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cgr_plugin.programs.packages import load_package, output_sha256, outputs_digest
from cgr_plugin.run.study.spec import load_study

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
STUDIES = RESULTS.parents[1] / "studies"
PUBLISHED = sorted(p for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.is_dir() else []
PACKAGES = sorted(m.parent for study in PUBLISHED for m in study.glob("programs/*/manifest.json"))


def _rows(package: Path) -> list[dict]:
    return [json.loads(line) for line in
            (package / "programs.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_published_study_is_a_shipped_study_file():
    assert PUBLISHED, "docs/results/ holds no published study"
    for study in PUBLISHED:
        spec = load_study(STUDIES / f"{study.name}.yaml")
        assert spec.name == study.name


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_a_shipped_package_matches_its_manifest(package):
    manifest = json.loads((package / "manifest.json").read_text())
    loaded = load_package(package)  # checks programs_sha256
    rows = _rows(package)
    assert len(loaded.programs) == manifest["programs"] == len(rows)
    assert manifest["generator_outputs_sha256"] == outputs_digest(
        (r["task"], str(r["item"].get("id", "")), output_sha256(r["generator_output"]))
        for r in rows)
    tasks = Counter(r["task"] for r in rows)
    assert manifest["tasks"] == dict(tasks)
    # every dataset in it carries its license terms, as the package's README promises
    for task in tasks:
        assert manifest["licenses"][task], task
        assert all(terms.get("license") for terms in manifest["licenses"][task].values())
    assert manifest["generator_prompts"] == sorted(
        {r["generator_prompt"]["name"] for r in rows if r["generator_prompt"]})


@pytest.mark.parametrize("study", PUBLISHED, ids=lambda p: p.name)
def test_finished_cells_name_a_shipped_package(study):
    shipped = {json.loads(m.read_text())["programs_sha256"]
               for m in study.glob("programs/*/manifest.json")}
    markers = sorted(study.glob("cells/*/done.json"))
    for marker in markers:
        done = json.loads(marker.read_text())
        assert done["items"] > 0 and done["settings_hash"], marker
        if done.get("package_sha256") is not None:
            assert done["package_sha256"] in shipped, f"{marker}: its package is not shipped"


@pytest.mark.parametrize("study", PUBLISHED, ids=lambda p: p.name)
def test_the_report_carries_the_shipped_packages_digests(study):
    summary_path = study / "report" / "summary.json"
    if not summary_path.is_file():
        pytest.skip(f"{study.name}: the study has not finished (no report yet)")
    sets = json.loads(summary_path.read_text())["program_sets"]
    digests = {s["generator_outputs_sha256"]: s["programs"] for s in sets}
    for path in study.glob("programs/*/manifest.json"):
        manifest = json.loads(path.read_text())
        assert digests.get(manifest["generator_outputs_sha256"]) == manifest["programs"], path
