"""Annotation drift job at release scale (issue #27): stage, run, compare.

``stage DIR``: write the clean (image, label) pair of three 512-px synthetic volumes
(seed 20230301: mv68 typical, 106 slices; mv64 thick vessels in voxels, 0.311 µm, 95
slices; mv55 sparse, 1.122 µm, 91 slices) to ``DIR/<vol>/clean``.
``run DIR OUT [--profile]``: the drift job (:func:`generate_drift_levels`, kind
annotation, levels 1..5) of each staged volume, as the workflow's drift rule runs it;
prints wall and CPU (user + sys) per volume and writes ``OUT/hashes.json`` (sha256 of
each level's label array and of each written file) and the entries.
``compare A B``: the two ``hashes.json`` must be equal.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import sys
import time
from pathlib import Path

SEED = 20230301
VOLUMES = ("mv68", "mv64", "mv55")
LEVELS = (1, 2, 3, 4, 5)


def stage(root: Path) -> None:
    import nibabel as nib
    import numpy as np

    from minivess_bundle.core.nifti import write_nifti
    from minivess_bundle.fetch.synthetic import generate_volume

    for volume in VOLUMES:
        synthetic = generate_volume(SEED, volume, 512, 110)
        affine = np.diag([*synthetic.acquisition.spacing_um, 1.0])
        clean = root / volume / "clean"
        clean.mkdir(parents=True, exist_ok=True)
        write_nifti(clean / "image.nii.gz", nib.Nifti1Image(synthetic.image, affine))
        write_nifti(clean / "label.nii.gz", nib.Nifti1Image(synthetic.mask, affine))
        print(
            volume,
            synthetic.mask.shape,
            synthetic.acquisition.spacing_um,
            f"foreground {synthetic.mask.mean():.4f}",
            flush=True,
        )


def _params() -> dict:
    from minivess_bundle.drift.plan import plan_jobs

    jobs = plan_jobs(["mv01"], {"types": ["annotation"], "volumes": ["mv01"], "levels": [1]})
    return dict(jobs[0].params)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(root: Path, out: Path, profile: bool, volumes=VOLUMES) -> None:
    import nibabel as nib
    import numpy as np

    from minivess_bundle.drift.variant import VariantFiles, VariantSpec, generate_drift_levels

    out.mkdir(parents=True, exist_ok=True)
    hashes, entries = {}, {}
    for volume in volumes:
        clean = root / volume / "clean"
        files = [
            VariantFiles(
                clean / "image.nii.gz",
                clean / "label.nii.gz",
                out / volume / f"L{level}" / "image.nii.gz",
                out / volume / f"L{level}" / "label.nii.gz",
            )
            for level in LEVELS
        ]
        for f in files:
            Path(f.out_image).parent.mkdir(parents=True, exist_ok=True)
        spec = VariantSpec(volume, "annotation", 1, global_seed=SEED, params=_params())
        profiler = cProfile.Profile() if profile else None
        t0, c0 = time.perf_counter(), os.times()
        if profiler:
            profiler.enable()
        result = generate_drift_levels(spec, list(LEVELS), files)
        if profiler:
            profiler.disable()
        c1, t1 = os.times(), time.perf_counter()
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        print(f"{volume}: wall {t1 - t0:.2f} s, CPU {cpu:.2f} s (user+sys)", flush=True)
        if profiler:
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumtime").print_stats(30)
        entries[volume] = result
        for level, f in zip(LEVELS, files, strict=True):
            label = np.asarray(nib.load(f.out_label).dataobj)
            hashes[f"{volume}/L{level}/label_array"] = _sha(np.ascontiguousarray(label).tobytes())
            hashes[f"{volume}/L{level}/label_file"] = _sha(Path(f.out_label).read_bytes())
            hashes[f"{volume}/L{level}/image_file"] = _sha(Path(f.out_image).read_bytes())
    (out / "hashes.json").write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    (out / "entries.json").write_text(
        json.dumps(entries, indent=1, sort_keys=True, default=str) + "\n"
    )


def compare(a: Path, b: Path) -> int:
    ha = json.loads((a / "hashes.json").read_text())
    hb = json.loads((b / "hashes.json").read_text())
    differ = sorted(k for k in ha.keys() | hb.keys() if ha.get(k) != hb.get(k))
    ea, eb = (a / "entries.json").read_text(), (b / "entries.json").read_text()
    print(f"{len(ha)} hashes compared, {len(differ)} differ; entries equal: {ea == eb}")
    for key in differ:
        print("  differs:", key)
    return 0 if not differ and ea == eb else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stage").add_argument("root", type=Path)
    p = sub.add_parser("run")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--volumes", nargs="+", default=list(VOLUMES), choices=VOLUMES)
    p = sub.add_parser("compare")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "stage":
        stage(args.root)
        return 0
    if args.command == "run":
        run(args.root, args.out, args.profile, args.volumes)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
