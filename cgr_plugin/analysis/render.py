"""Write summary.json, report.md and a self-contained report.html from a summary.

The HTML page is the Jinja template ``templates/report.html.j2`` rendered with autoescape:
model names, task names, run paths and plugin-given names are untrusted text and reach the page
only escaped. Figures are embedded as base64 SVG images, so the page needs no other file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from ..record import HARD_CODED, SCORED_CHANNELS
from .headline import headline
from .paired_runs import comparison_table
from .plots import figures

__all__ = ["write_report"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _acc(a: dict[str, Any]) -> str:
    if a["value"] is None:
        return "-"
    return f"{_pct(a['value'])} [{_pct(a['low'])}, {_pct(a['high'])}]"


def _diff(d: dict[str, Any]) -> str:
    if d.get("difference") is None:
        return "-"
    return f"{100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _paired(d: dict[str, Any] | None) -> list[str]:
    """assisted - control, rescued, harmed and McNemar's p as table cells."""
    if d is None:
        return ["-", "-", "-", "-"]
    p = d.get("mcnemar_p")
    return [_diff(d), str(d["rescued"]), str(d["harmed"]), "-" if p is None else f"{p:.3g}"]


Table = tuple[str, list[str], list[list[str]]]


def _provenance_tables(groups: list[dict[str, Any]]) -> list[Table]:
    """Provenance classes and strategy tags against accuracy, and the most common shapes."""
    tables = []
    rows = [[g["task"], g["solver"], g["generator"], row["kind"], row["name"], str(row["n"]),
             _pct(row["share"]), _acc(row["accuracy"])]
            for g in groups for row in g.get("strategies", [])]
    if rows:
        tables.append((
            "Where the assisted answer comes from (provenance: the class of each program that "
            "ran ok, from re-runs under canned solvers and permuted options, share of the "
            "programs re-run; constant programs are those the 'flagged programs excluded' "
            "tables drop; tag: what the program's code does, share of the programs)",
            ["task", "solver", "generator", "kind", "class or tag", "programs", "share %",
             "assisted acc"], rows))
    rows = [[g["task"], g["solver"], g["generator"], shape["shape"], str(shape["n"]),
             _pct(shape["share"]), _acc(shape["accuracy"]), shape["provenance"]]
            for g in groups for shape in g.get("shapes", [])]
    if rows:
        tables.append(("Most common program shapes (names and literals abstracted)",
                       ["task", "solver", "generator", "shape", "programs", "share %",
                        "assisted acc", "usual class"], rows))
    return tables


def _attribution_table(groups: list[dict[str, Any]]) -> list[Table]:
    """How much of the gain the generator's own knowledge could explain."""
    rows = []
    for g in groups:
        a = g.get("attribution")
        if not a or not g.get("assisted_ran"):
            continue
        where = a["difference_where_generator_wrong"]
        rows.append([g["task"], g["solver"], g["generator"],
                     f"{a['rescued_as_generator']} / {a['rescued_otherwise']}",
                     f"{a['harmed_as_generator']} / {a['harmed_otherwise']}",
                     str(a["generator_wrong_n"]), *(_paired(where)[:3]),
                     _pct(a["leading_prompt"])])
    if not rows:
        return []
    return [("Generator knowledge (rescued and harmed: assisted answer = the generator's own / "
             "another; assisted - direct on the items where the generator's own letter is not "
             "the gold, the part of a gain its knowledge cannot explain; leading prompt: a "
             "solver prompt states or singles out the generator's answer, share of programs "
             "judged)",
             ["task", "solver", "generator", "rescued: generator's / other",
              "harmed: generator's / other", "generator wrong", "assisted - direct there",
              "rescued", "harmed", "leading prompt %"], rows)]


def _tables(summary: dict[str, Any]) -> list[Table]:
    groups = summary["groups"]
    tables = [(
        "Per dataset (accuracy %, Wilson 95%; difference in points, paired bootstrap 95%)",
        ["task", "solver", "generator", "n", "direct", "assisted", "generator acc",
         "assisted+fallback", "assisted - direct", "rescued", "harmed", "McNemar p",
         "calls/item"],
        [[g["task"], g["solver"], g["generator"], str(g["n"]), _acc(g["accuracy"]["direct"]),
          _acc(g["accuracy"]["assisted"]), _acc(g["accuracy"]["generator"]),
          _acc(g["accuracy"]["assisted_fallback"]),
          _diff(g["difference"]), str(g["difference"]["rescued"]),
          str(g["difference"]["harmed"]),
          "-" if g["difference"]["mcnemar_p"] is None else f"{g['difference']['mcnemar_p']:.3g}",
          f"{g['solver_calls']['assisted_mean']:.2f}"] for g in groups])]
    controlled = [g for g in groups if "budget_matched" in g["accuracy"]]
    if controlled:
        tables.append((
            "Budget-matched control (direct prompt sampled as often as the program called the "
            "solver, majority vote)",
            ["task", "solver", "n", "calls/item", "direct", "budget-matched", "assisted",
             "assisted - budget-matched"],
            [[g["task"], g["solver"], str(g["n"]), f"{g['solver_calls']['assisted_mean']:.2f}",
              _acc(g["accuracy"]["direct"]), _acc(g["accuracy"]["budget_matched"]),
              _acc(g["accuracy"]["assisted"]), _diff(g["difference_vs_budget_matched"])]
             for g in controlled]))
    control_rows = [
        [g["task"], g["solver"], g["generator"], name, str(c["n"]),
         "-" if c["solver_calls_mean"] is None else f"{c['solver_calls_mean']:.2f}",
         _acc(c["accuracy"]), _acc(g["accuracy"]["assisted"]),
         *(_paired(c["assisted_minus_control"]))]
        for g in groups for name, c in g.get("controls", {}).items()]
    if control_rows:
        tables.append((
            "Controls beside assisted (cot: the solver reasons, then answers, in one call; "
            "fixed:NAME: one fixed program on every item; assisted - control paired on the "
            "items where both ran)",
            ["task", "solver", "generator", "control", "n", "calls/item", "control",
             "assisted", "assisted - control", "rescued", "harmed", "McNemar p"],
            control_rows))
    program_rows = [
        [g["task"], g["solver"], g["generator"], str(g["programs"]["programs"]),
         _acc(g["accuracy"]["assisted"]), f"{g['solver_calls']['assisted_mean']:.2f}",
         _pct(g["programs"]["copies_prompt"]), _pct(g["programs"]["diversity"]),
         _pct(g["programs"]["largest_shape_share"])]
        for g in groups if g.get("programs", {}).get("programs")]
    if program_rows:
        tables.append((
            "Programs by generator prompt family (copies prompt: share with the shape of a "
            "program the prompt shows; diversity: distinct shapes / programs; largest: the "
            "share of the most common shape)",
            ["task", "solver", "generator [family]", "programs", "assisted", "calls/item",
             "copies prompt %", "diversity %", "largest shape %"], program_rows))
    for label, block in (("", summary["aggregates"]),
                         (" with flagged programs excluded", summary["sensitivity"]["aggregates"])):
        rows = []
        for partition, content in block.items():
            for model, agg in content["by_model"].items():
                macro, micro = agg["macro"], agg["micro"]
                rows.append([partition, model, str(len(agg["tasks"])), str(agg["items"]),
                             _pct(macro["control"]), _pct(macro["treated"]), _diff(macro),
                             _acc(micro["direct"]), _acc(micro["assisted"]),
                             _diff(micro["difference"])])
        tables.append((f"Partitions{label} (macro over datasets, stratified bootstrap; micro "
                       "over items)",
                       ["partition", "solver + generator", "datasets", "items", "macro direct",
                        "macro assisted", "macro diff", "micro direct", "micro assisted",
                        "micro diff"], rows))
    tables += _provenance_tables(groups) + _attribution_table(groups)
    tables.append(("Audits and failures (share of programs that ran)",
                   ["task", "solver", "generator", "hard-coded", "altered item",
                    "extraction failure", "execution failure", "timeout", "direct unreadable"],
                   [[g["task"], g["solver"], g["generator"],
                     *(_pct(g["audits"][k]) for k in (HARD_CODED, "altered_item",
                                                      "extraction_failure",
                                                      "execution_failure", "timeout",
                                                      "direct_unreadable"))]
                    for g in groups]))
    scorers = sorted({name for g in groups for name in g.get("scores", {})})
    for name in scorers:
        channels = [c for c in SCORED_CHANNELS
                    if any(c in g["scores"].get(name, {}) for g in groups)]
        tables.append((f"Scorer {name} (plugin; mean over items, n in brackets)",
                       ["task", "solver", "generator", *channels],
                       [[g["task"], g["solver"], g["generator"],
                         *(f"{s['mean']:.3f} ({s['n']})" if (s := g["scores"].get(name, {})
                                                              .get(c)) else "-"
                           for c in channels)] for g in groups]))
    status_names = [s for s in groups[0]["statuses"] if any(g["statuses"][s] for g in groups)]
    tables.append(("Assisted statuses (items)", ["task", "solver", *status_names],
                   [[g["task"], g["solver"], *(str(g["statuses"][s]) for s in status_names)]
                    for g in groups]))
    if summary.get("program_sets"):
        tables.append((
            "Program sets (each run's generated programs; a program package's manifest gives "
            "the same sha256 as `generator_outputs_sha256`)",
            ["run", "generator", "programs", "sha256"],
            [[entry["run"], entry["generator"], str(entry["programs"]),
              entry["generator_outputs_sha256"]] for entry in summary["program_sets"]]))
    return tables


def _markdown(summary: dict[str, Any],
              extra: Sequence[tuple[str, list[str], list[list[str]]]] = ()) -> str:
    lines = ["# CGR report", "", f"Runs: {', '.join(summary['settings']['runs'])}", "",
             *(f"- {sentence}" for sentence in headline(summary)), "",
             f"Bootstrap: {summary['settings']['bootstrap_resamples']} resamples, seed "
             f"{summary['settings']['seed']}. Direct gate: "
             f"{summary['settings']['direct_gate']:.0%}.", ""]
    for title, header, rows in [*extra, *_tables(summary)]:
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    zero = summary["diagnostics"]["zero_baseline"]
    lines += ["## Diagnostics", "", "Zero-baseline pairs (no correct direct answer): "
              + (", ".join(zero) if zero else "none"), ""]
    return "\n".join(lines)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("cgr_plugin.analysis", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def _html(summary: dict[str, Any], explorer: dict[str, Any] | None,
          extra: Sequence[tuple[str, list[str], list[list[str]]]]) -> str:
    images = [(title, base64.b64encode(svg.encode("utf-8")).decode("ascii"))
              for title, svg in figures(summary).items()]
    return _environment().get_template("report.html.j2").render(
        runs=summary["settings"]["runs"], tables=[*extra, *_tables(summary)], figures=images,
        headline=headline(summary), explorer=explorer)


def write_report(summary: dict[str, Any], out: Path, explorer: dict[str, Any] | None = None,
                 comparison: dict[str, Any] | None = None) -> dict[str, Path]:
    """summary.json, report.md and report.html; ``explorer`` (analysis/explorer.py's
    ``explorer_data``) adds the item explorer to the HTML page, ``comparison``
    (analysis/paired_runs.py) a first table of run B - run A and comparison.json."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "summary.json", "md": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n",
                             encoding="utf-8")
    extra = []
    if comparison is not None:
        paths["compare"] = out / "comparison.json"
        paths["compare"].write_text(json.dumps(
            {**comparison, "items": [{"task": t, "item": i, **v} for (t, i), v in
                                     sorted(comparison["items"].items())]},
            indent=2, sort_keys=True) + "\n", encoding="utf-8")
        extra.append(comparison_table(comparison))
    paths["md"].write_text(_markdown(summary, extra), encoding="utf-8")
    paths["html"].write_text(_html(summary, explorer, extra), encoding="utf-8")
    return paths
