"""Report figures of a drift evaluation (matplotlib Agg, deterministic PNG metadata).

- power curves: one panel per drift kind, power vs sample size at fraction 1.0, one colour
  per detector, one line style per level (lowest dotted, highest solid);
- false alarms: the controls' false-positive rate per detector and sample size, calibrated
  (filled) and uncalibrated (hatched), with alpha and the tolerance band;
- difficulty: the difficulty detector's power by level per kind, with the target bands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core.fsio import atomic_path

_METADATA = {"Software": None}


def _save(fig: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata=_METADATA)


def power_curves(result: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["results"] if math.isclose(r["fraction"], 1.0)]
    kinds = sorted({r["kind"] for r in rows}) or ["(none)"]
    detectors = sorted({r["detector"] for r in rows})
    cols = min(4, len(kinds))
    nrows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, kind in zip(axes.flat, kinds, strict=False):
        levels = sorted({r["level"] for r in rows if r["kind"] == kind})
        styles = {
            lv: ":" if i == 0 and len(levels) > 1 else "-" if lv == levels[-1] else "--"
            for i, lv in enumerate(levels)
        }
        for d, det in enumerate(detectors):
            for lv in levels:
                pts = sorted(
                    (r["n"], r["power"], *r["power_interval"])
                    for r in rows
                    if r["kind"] == kind and r["detector"] == det and r["level"] == lv
                )
                if pts:
                    ns, power, low, high = zip(*pts, strict=True)
                    ax.errorbar(
                        ns,
                        power,
                        yerr=[
                            [p - lo for p, lo in zip(power, low, strict=True)],
                            [hi - p for p, hi in zip(power, high, strict=True)],
                        ],
                        fmt=styles[lv],
                        marker="o",
                        ms=3,
                        capsize=2,
                        lw=0.9,
                        color=colours(d),
                        label=f"{det} L{lv}",
                    )
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("n (patches)", fontsize=8)
        ax.set_ylabel("power", fontsize=8)
        ax.axhline(result["design"]["config"]["alpha"], color="grey", lw=0.6)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=6, loc="lower right", ncol=len(detectors))
    fig.suptitle(
        "Power at fraction 1.0 on new test volumes, mean of the replications with its 95 % "
        "interval clustered by test volume (alpha in grey)",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def false_alarms(result: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["false_positive_rate"]
    detectors = sorted({r["detector"] for r in rows})
    sizes = sorted({r["n"] for r in rows})
    alpha = result["design"]["config"]["alpha"]
    tol = result["design"]["config"]["fpr_tolerance"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(1, len(detectors))
    colours = plt.get_cmap("tab10")
    for d, det in enumerate(detectors):
        by_n = {r["n"]: r for r in rows if r["detector"] == det}
        xs = [i + d * width for i in range(len(sizes))]
        ax.bar(
            xs,
            [by_n[n]["fpr_uncalibrated"] for n in sizes],
            width,
            fill=False,
            hatch="//",
            edgecolor=colours(d),
        )
        fpr = [by_n[n]["fpr"] for n in sizes]
        errors = [
            [f - by_n[n]["fpr_interval"][0] for f, n in zip(fpr, sizes, strict=True)],
            [by_n[n]["fpr_interval"][1] - f for f, n in zip(fpr, sizes, strict=True)],
        ]
        ax.bar(xs, fpr, width, color=colours(d), label=det, yerr=errors, capsize=2)
    ax.axhspan(0, alpha + tol, color="green", alpha=0.12)
    ax.axhline(alpha, color="green", lw=1)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sizes))], [str(n) for n in sizes])
    ax.set_xlabel("n (patches)")
    ax.set_ylabel("false-positive rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        "False alarms on new clean volumes: calibrated (filled, 95 % interval clustered by "
        "volume)\n"
        "vs the detectors' own p-values (hatched)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def difficulty_curve(result: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = result["difficulty"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    colours = plt.get_cmap("tab10")
    for i, (kind, row) in enumerate(sorted(spec["kinds"].items())):
        pts = sorted((int(k), v) for k, v in row["power_by_level"].items())
        ax.plot(*zip(*pts, strict=True), marker="o", color=colours(i % 10), label=kind)
    lo, hi = spec["target"]["lowest_level_power"]
    ax.axhspan(lo, hi, color="orange", alpha=0.12)
    ax.axhline(spec["target"]["highest_level_power_min"], color="green", lw=0.8, ls="--")
    ax.set_xlabel("level")
    ax.set_ylabel("power")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{spec['detector']} at n={spec['n']}, fraction {spec['fraction']}", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def draw_all(result: dict[str, Any], figures: dict[str, str | Path]) -> None:
    if figures.get("power"):
        power_curves(result, figures["power"])
    if figures.get("fpr"):
        false_alarms(result, figures["fpr"])
    if figures.get("difficulty"):
        difficulty_curve(result, figures["difficulty"])


def markdown_table(result: dict[str, Any], fraction: float = 1.0) -> str:
    """The benchmark tables of a result as Markdown.

    First, one row per detector: its false-alarm rate on new clean volumes at each n and
    the harm AUROC (``result["harm_auroc"]``, fraction 1.0) at each n, every figure
    ``rate [95 % interval]`` (three decimals; the interval clustered by test volume,
    :func:`.intervals.clustered_interval`); then one row per (detector, kind) at the
    kind's highest level and ``fraction``: power at each n with its interval."""
    rows = [r for r in result["results"] if math.isclose(r["fraction"], fraction)]
    sizes = sorted({r["n"] for r in rows} | {r["n"] for r in result["false_positive_rate"]})
    top: dict[str, int] = {}
    for r in rows:
        top[r["kind"]] = max(top.get(r["kind"], r["level"]), r["level"])
    fpr = {(r["detector"], r["n"]): r for r in result["false_positive_rate"]}
    auroc = {(r["detector"], r["n"]): r for r in result.get("harm_auroc") or []}
    detectors = sorted({d for d, _ in fpr} | {r["detector"] for r in rows})

    def cell(rate: float | None, interval: list[float] | None, digits: int = 3) -> str:
        if rate is None:
            return "—"
        if interval is None:
            return f"{rate:.{digits}f}"
        return f"{rate:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"

    def table(head: list[str], body: list[list[str]]) -> list[str]:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return lines + ["| " + " | ".join(row) + " |" for row in body]

    first = []
    for det in detectors:
        alarms = [
            cell(fpr[(det, n)]["fpr"], fpr[(det, n)]["fpr_interval"]) if (det, n) in fpr else "—"
            for n in sizes
        ]
        harm = [
            cell(auroc[(det, n)].get("auroc"), auroc[(det, n)].get("interval"))
            if (det, n) in auroc
            else "—"
            for n in sizes
        ]
        first.append([det, *alarms, *harm])
    head = ["detector", *(f"FPR n={n}" for n in sizes), *(f"harm AUROC n={n}" for n in sizes)]
    lines = table(head, first)
    second = []
    for det in detectors:
        for kind in sorted(top):
            by_n = {
                r["n"]: r
                for r in rows
                if r["detector"] == det and r["kind"] == kind and r["level"] == top[kind]
            }
            power = [
                cell(by_n[n]["power"], by_n[n]["power_interval"], 2) if n in by_n else "—"
                for n in sizes
            ]
            second.append([det, f"{kind} ({top[kind]})", *power])
    lines += ["", *table(["detector", "kind (level)", *(f"power n={n}" for n in sizes)], second)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m minivess_bundle.drift_eval.figures DRIFT_EVAL_JSON``: print the tables."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("result", type=Path, help="a drift_eval.json")
    parser.add_argument("--fraction", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(markdown_table(json.loads(args.result.read_text()), args.fraction), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
