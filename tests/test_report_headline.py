"""The report's headline block: sentences that carry each paired difference with its interval,
test and counts, taken from summary.json (hand-made run folder, no model)."""

from __future__ import annotations

import html
import json

import pytest

from cgr_plugin.cli import cgr_main

from .analysis_run_folder import write_run_folder


def test_headline_quotes_the_summary_numbers(tmp_path):
    run = write_run_folder(tmp_path / "run")
    with pytest.raises(SystemExit) as done:
        cgr_main(["report", str(run), "--out", str(tmp_path / "rep"), "--resamples", "300"])
    assert done.value.code == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    page = html.unescape((tmp_path / "rep" / "report.html").read_text())
    markdown = (tmp_path / "rep" / "report.md").read_text()
    headline = page[page.index('id="cgr-headline"'):page.index("</section>")]
    for g in summary["groups"]:
        d = g["difference"]
        sentence = (f"{g['task']} ({g['solver']} solving, {g['generator']} writing programs): "
                    f"assisted {100 * g['accuracy']['assisted']['value']:.1f}% against direct "
                    f"{100 * g['accuracy']['direct']['value']:.1f}% on {d['n']} items, a "
                    f"difference of {100 * d['difference']:+.1f} points (95% paired bootstrap "
                    f"interval {100 * d['low']:+.1f} to {100 * d['high']:+.1f}; exact McNemar "
                    f"p = {d['mcnemar_p']:.3g}; {d['rescued']} rescued, {d['harmed']} harmed).")
        assert sentence in headline and sentence in markdown
    pooled = summary["aggregates"]["all"]["by_model"]["solver-s + gen-g"]
    assert (f"Over 2 datasets ({pooled['items']} items), solver-s + gen-g: assisted minus "
            f"direct is {100 * pooled['macro']['difference']:+.1f} points") in headline
