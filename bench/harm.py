"""Harm of the reference segmenters on a built bundle, without the detectors.

``python bench/harm.py BAG --reference results/drift_eval/reference [--level 5] [--out harm.json]``

Loads the cached reference (``unet.pt`` + ``reference.json`` that the ``drift_eval_reference``
rule wrote), checks its training list is disjoint from the test volumes, and runs the same
:class:`minivess_bundle.drift_eval.harm.HarmScorer` that ``drift_eval_score`` runs over the
manifest's sets at ``--level`` (central ``--crop``, 2000 bootstrap draws). Prints the
reference figures (training time, clean Dice / clDice on the test volumes) and a Markdown
table of the harm per kind, sorted by the UNet's Dice drop; ``--out`` keeps the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from minivess_bundle.drift_eval.collect import manifest_harm
from minivess_bundle.drift_eval.harm import HarmScorer
from minivess_bundle.drift_eval.reference import check_disjoint, load_segmenter, reference_models
from minivess_bundle.drift_eval.sets import read_plan
from minivess_bundle.drift_eval.vesselness import VesselnessSegmenter


def score(bag: Path, reference: Path, level: int, crop: list[int], seed: int) -> dict:
    record = json.loads((reference / "reference.json").read_text())
    plan = read_plan(bag)
    check_disjoint(record, plan.held_out)
    vesselness = VesselnessSegmenter(
        threshold=record["vesselness"]["threshold"],
        sigmas=tuple(record["vesselness"]["sigmas_voxels"]),
    )
    unet = load_segmenter(reference / "unet.pt", "cpu")
    scorer = HarmScorer({"unet": unet, "vesselness": vesselness}, crop, seed=seed)
    start = time.perf_counter()
    manifest_harm(plan, scorer, levels={level})
    return {
        "reference_models": reference_models(record, scorer.clean),
        "by_set": scorer.by_set(),
        "variants": scorer.variants,
        "seconds": round(time.perf_counter() - start, 1),
    }


def report(result: dict) -> str:
    m = result["reference_models"]
    u, v = m["unet"], m["vesselness"]

    def per_volume(ref: dict) -> str:
        items = ref["clean_test"]["per_volume"].items()
        return ", ".join(f"{k} {x['dice']:.3f} / {x['cldice']:.3f}" for k, x in items)

    lines = [
        f"- training list: {len(m['training_volumes'])} volumes; left out (drift variants): "
        f"{', '.join(m['excluded_from_training']) or 'none'}; test: {', '.join(m['test_volumes'])}",
        f"- UNet: {u['steps']} steps ({u['stopped']}), best validation Dice "
        f"{u['best']['dice']:.3f} at step {u['best']['step']}; training "
        f"{u['training_time']['wall_s']:.0f} s wall, {u['training_time']['cpu_s']:.0f} s CPU "
        f"({u['device']}, {u['threads']} threads)",
        f"- UNet clean test Dice / clDice {u['clean_test']['dice_mean']:.3f} / "
        f"{u['clean_test']['cldice_mean']:.3f} ({per_volume(u)})",
        f"- vesselness threshold {v['threshold']:.4g} (training Dice "
        f"{v['training_dice_pooled']:.3f}); clean test Dice / clDice "
        f"{v['clean_test']['dice_mean']:.3f} / {v['clean_test']['cldice_mean']:.3f} "
        f"({per_volume(v)})",
        "",
        "| kind | UNet Dice drop [95 % CI] | UNet clDice drop | vesselness Dice drop [95 % CI] "
        "| vesselness clDice drop | harmful |",
        "|---|---|---|---|---|---|",
    ]

    def drop(x: dict) -> str:
        return "{:.3f} [{:.3f}, {:.3f}]".format(x["dice_drop"], *x["dice_drop_interval"])

    for s in sorted(result["by_set"], key=lambda s: -s["by_reference"]["unet"]["dice_drop"]):
        a, b = s["by_reference"]["unet"], s["by_reference"]["vesselness"]
        if s["label_only"]:
            lines.append(f"| {s['kind']} | label-only: 0 by construction (label harm) | | | | - |")
            continue
        lines.append(
            f"| {s['kind']} | {drop(a)} | {a['cldice_drop']:.3f} | {drop(b)} | "
            f"{b['cldice_drop']:.3f} | {'yes' if s['harmful'] else 'no'} |"
        )
    lines.append(f"\nscored in {result['seconds']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--level", type=int, default=5)
    parser.add_argument("--crop", type=int, nargs=3, default=[64, 64, 32])
    parser.add_argument("--seed", type=int, default=20230301)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = score(args.bag, args.reference, args.level, args.crop, args.seed)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(report(result))


if __name__ == "__main__":
    main()
