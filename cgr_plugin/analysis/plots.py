"""Report figures as SVG text (matplotlib, no files, no network).

Each figure is its own ``Figure`` on its own Agg canvas: nothing here touches pyplot's global
figure manager or the process-wide backend, so a report can be drawn inside a notebook or a
program with its own matplotlib settings without changing them.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["figures"]

COLORS = {"direct": "#4c72b0", "assisted": "#dd8452", "generator": "#55a868"}


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A new figure on its own Agg canvas, and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _label(group: dict[str, Any]) -> str:
    return f"{group['task'].removeprefix('cgr_')}\n{group['solver']}"


def accuracy_bars(groups: list[dict[str, Any]]) -> str:
    import numpy as np

    fig, ax = _figure(max(6, 1.2 * len(groups)), 3.6)
    x = np.arange(len(groups))
    for i, channel in enumerate(COLORS):
        accs = [g["accuracy"][channel] for g in groups]
        values = [a["value"] or 0 for a in accs]
        low = [v - (a["low"] or 0) for v, a in zip(values, accs, strict=True)]
        high = [(a["high"] or 0) - v for v, a in zip(values, accs, strict=True)]
        ax.bar(x + (i - 1) * 0.27, values, 0.27, yerr=[low, high], capsize=2, label=channel,
               color=COLORS[channel])
    ax.set_xticks(x, [_label(g) for g in groups], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (Wilson 95%)")
    ax.legend(fontsize=7)
    return _svg(fig)


def forest(groups: list[dict[str, Any]]) -> str:
    fig, ax = _figure(6, 0.45 * len(groups) + 1)
    for y, g in enumerate(groups):
        d = g["difference"]
        if d["difference"] is None:
            continue
        ax.errorbar(d["difference"], y, xerr=[[d["difference"] - d["low"]],
                                              [d["high"] - d["difference"]]],
                    fmt="o", color=COLORS["assisted"], capsize=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(groups)), [_label(g).replace("\n", " / ") for g in groups],
                  fontsize=7)
    ax.set_xlabel("assisted - direct (paired bootstrap 95%)")
    return _svg(fig)


def rescued_harmed(groups: list[dict[str, Any]]) -> str:
    import numpy as np

    fig, ax = _figure(max(6, 1.0 * len(groups)), 3.2)
    x = np.arange(len(groups))
    ax.bar(x - 0.2, [g["difference"]["rescued"] for g in groups], 0.4, label="rescued",
           color="#55a868")
    ax.bar(x + 0.2, [g["difference"]["harmed"] for g in groups], 0.4, label="harmed",
           color="#c44e52")
    ax.set_xticks(x, [_label(g) for g in groups], fontsize=7)
    ax.set_ylabel("items")
    ax.legend(fontsize=7)
    return _svg(fig)


def solver_calls(groups: list[dict[str, Any]]) -> str:
    """A histogram per group: how many items made 0, 1, 2, ... solver calls (bars side by side
    on integer counts, so a run where every item made 4 calls is one bar at 4)."""
    import numpy as np

    counts = sorted({int(k) for g in groups for k in g["solver_calls"]["assisted_histogram"]})
    xs = np.arange(0, max(counts, default=0) + 1)  # from 0: a reader sees the scale
    fig, ax = _figure(min(14, max(6, 0.4 * len(xs))), 3.2)
    width = 0.8 / max(len(groups), 1)
    for i, g in enumerate(groups):
        histogram = {int(k): v for k, v in g["solver_calls"]["assisted_histogram"].items()}
        bars = ax.bar(xs + (i - (len(groups) - 1) / 2) * width,
                      [histogram.get(x, 0) for x in xs], width,
                      label=_label(g).replace("\n", " / "))
        for bar, x in zip(bars, xs, strict=True):
            bar.set_gid(f"calls-{i}-{x}")  # named in the SVG, for tests and readers of it
    step = -(-len(xs) // 25)  # at most 25 labels
    ax.set_xticks(xs[::step], [str(x) for x in xs[::step]])
    ax.set_xlim(xs[0] - 0.6, xs[-1] + 0.6)
    ax.set_xlabel("solver calls per item (assisted)")
    ax.set_ylabel("items")
    ax.legend(fontsize=6)
    return _svg(fig)


def statuses(groups: list[dict[str, Any]]) -> str:
    import numpy as np

    names = [s for s in groups[0]["statuses"] if any(g["statuses"][s] for g in groups)]
    fig, ax = _figure(max(6, 1.0 * len(groups)), 3.4)
    bottom = np.zeros(len(groups))
    for name in names:
        values = np.array([g["statuses"][name] / g["n"] for g in groups])
        ax.bar(range(len(groups)), values, bottom=bottom, label=name)
        bottom += values
    ax.set_xticks(range(len(groups)), [_label(g) for g in groups], fontsize=7)
    ax.set_ylabel("share of items")
    ax.legend(fontsize=6, ncol=2)
    return _svg(fig)


def figures(summary: dict[str, Any]) -> dict[str, str]:
    """Title -> SVG document of every report figure."""
    groups = summary["groups"]
    return {"Accuracy per dataset and channel": accuracy_bars(groups),
            "Assisted minus direct": forest(groups),
            "Rescued and harmed items": rescued_harmed(groups),
            "Solver calls per item": solver_calls(groups),
            "Assisted status breakdown": statuses(groups)}
