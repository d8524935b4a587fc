"""Resample speed on an mv68-size pair: the numpy path vs SimpleITK's, whole jobs and steps.

``python bench/resample_speed.py [--work DIR] [--repeat 3]``

Workload: the synthetic mv68 (512 x 512 x 106 at 0.994 x 0.994 x 2.0 um, the real
grid) resampled to 1 um isotropic (509 x 509 x 212 = 54.9 M output voxels), default
config (linear / nearest, isal 2). Each configuration runs as a fresh
``minivess-bundle resample`` process (what a workflow job is), best of ``--repeat``:
wall, CPU (user + sys of the child) and peak RSS (``ru_maxrss`` of the child).
``engine=sitk`` runs the same job with the SimpleITK slab function forced for every
interpolator and 8 M-voxel slabs (the code before the numpy path), in a child that
patches ``NUMPY_INTERPOLATORS`` and ``DEFAULT_SLAB_VOXELS``; both engines' outputs are
compared byte for byte. Two jobs as the scheduler runs them on 2 cores: ``threads: 1``
side by side, ``threads: 2`` one after the other. Then the interpolation step alone
(image + mask, all slabs) and the decode and isal encode of each file in this process,
CPU seconds, one thread, and the start-up of a 32^3 job (``bench/release.py``'s ``startup_real``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minivess_bundle.core.spec import to_json
from minivess_bundle.resample import ResampleSpec

SEED = 20230301
HERE = Path(__file__).resolve().parent
#: The resample job's spec: 1 um isotropic, linear/nearest, no voxel limit, um, isal 2.
SPEC = to_json(
    ResampleSpec(
        target_spacing_um=(1.0, 1.0, 1.0),
        image_interpolator="linear",
        label_interpolator="nearest",
        max_output_voxels=0,
        source_units="um",
        codec="isal",
        level=2,
    )
)

_CHILD = """
import sys
from minivess_bundle import cli, resample
from minivess_bundle.resample import kernels, pair
if sys.argv[1] == "sitk":  # the code before the numpy path: SimpleITK, 8 M-voxel slabs
    kernels.NUMPY_INTERPOLATORS = pair.NUMPY_INTERPOLATORS = ()
    resample.DEFAULT_SLAB_VOXELS.update(linear=1 << 23, nearest=1 << 23)
sys.exit(cli.main(sys.argv[2:]))
"""


def job(staged: dict, out: Path, engine: str, threads: int) -> dict:
    """One resample job in a fresh process: wall, CPU, peak RSS, output sha256."""
    args = ["resample", "mv68", "--image", staged["image"], "--label", staged["label"],
            "--spec", SPEC, "--threads", str(threads), "--out-image", str(out / "i.nii.gz"),
            "--out-label", str(out / "l.nii.gz"), "-q"]  # fmt: skip
    args = args[-1:] + args[:-1]  # -q is a top-level option
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, engine, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(stderr.decode()[-2000:])
    digest = hashlib.sha256()
    for name in ("i.nii.gz", "l.nii.gz"):
        digest.update((out / name).read_bytes())
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "sha256": digest.hexdigest(),
    }


def two_jobs(staged: dict, work: Path, threads: int) -> float:
    """Wall of two resample jobs on 2 cores as the scheduler would run them: with
    ``threads: 1`` side by side, with ``threads: 2`` one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    outs = [work / f"pair{i}" for i in range(2)]
    for out in outs:
        out.mkdir(exist_ok=True)
    start = time.perf_counter()
    if threads == 1:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda out: job(staged, out, "numpy", 1), outs))
    else:
        for out in outs:
            job(staged, out, "numpy", threads)
    return time.perf_counter() - start


def interpolation_only(staged: dict) -> dict:
    """Seconds (CPU, one thread) of the slab interpolation alone, numpy vs SimpleITK."""
    import numpy as np

    from minivess_bundle import resample
    from minivess_bundle.core.errors import ResampleError
    from minivess_bundle.core.nifti import DeterministicGzipWriter, read_header, read_voxels
    from minivess_bundle.resample import grid as grids
    from minivess_bundle.resample import pair

    img, _, spacing, _ = pair._read_pair("mv68", staged["image"], staged["label"], "um")
    grid = resample.output_grid(img.spatial_shape, spacing, [1.0, 1.0, 1.0])
    out = {"output_voxels": int(np.prod(grid["shape"]))}
    for role, interp, as_float in (("image", "linear", True), ("label", "nearest", False)):
        cpu = time.process_time()
        array = read_voxels(read_header(staged[role]), "mv68", error=ResampleError)
        out[f"{role}_decode_cpu_s"] = time.process_time() - cpu
        slices = resample.slab_slices(
            grid, img.spatial_shape, spacing[2], resample.DEFAULT_SLAB_VOXELS[interp]
        )
        plan = grids._slab_plan(
            array.shape[0], spacing[2], grid, resample.SLAB_MARGIN[interp], slices
        )
        slabs = [
            pair._finished_slab(array, spacing, grid, interp, as_float, 1, *item)[0]
            for item in plan
        ]
        cpu = time.process_time()
        writer = DeterministicGzipWriter(io.BytesIO(), "isal", 2)
        for slab in slabs:
            writer.write(slab)
        writer.close()
        out[f"{role}_encode_cpu_s"] = time.process_time() - cpu
        del slabs
        for engine, fn, voxels in (
            ("numpy", resample.resample_slab, resample.DEFAULT_SLAB_VOXELS[interp]),
            ("sitk", resample.sitk_slab, 1 << 23),  # the slab size before the numpy path
        ):
            slices = resample.slab_slices(grid, img.spatial_shape, spacing[2], voxels)
            plan = grids._slab_plan(
                array.shape[0], spacing[2], grid, resample.SLAB_MARGIN[interp], slices
            )
            cpu = time.process_time()
            for k0, k1, i0, i1 in plan:
                fn(array, spacing, grid, k0, k1, i0, i1, interp, as_float, 1)
            out[f"{role}_{interp}_{engine}_cpu_s"] = time.process_time() - cpu
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="resample-speed-"))
    staging = work / "staging"
    staged = {"image": str(staging / "raw/mv68.nii.gz"),
              "label": str(staging / "seg/mv68_y.nii.gz")}  # fmt: skip
    if not Path(staged["image"]).exists():  # in a child: this process stays small, and a
        # child's ru_maxrss starts from its parent's at fork
        code = (
            "import sys; from minivess_bundle.fetch.synthetic import write_synthetic_volume as w; "
            f"w(sys.argv[1], 'mv68', {SEED}, size_xy=512, max_z=110)"
        )
        subprocess.run([sys.executable, "-c", code, str(staging)], check=True)
    print(f"load average {os.getloadavg()}")
    results = {}
    for engine, threads in [("sitk", 1), *(("numpy", t) for t in args.threads)]:
        runs = [job(staged, work, engine, threads) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["wall_s"])
        best["cpu_s"] = min(r["cpu_s"] for r in runs)
        results[f"{engine} threads={threads}"] = best
        print(f"job {engine:5} threads={threads}: wall {best['wall_s']:.2f} s, CPU "
              f"{best['cpu_s']:.2f} s, peak RSS {best['rss_mb']:.0f} MB")  # fmt: skip
    digests = {r["sha256"] for r in results.values()}
    print(f"outputs byte-identical across engines and threads: {len(digests) == 1}")
    for threads in (1, 2):
        walls = [two_jobs(staged, work, threads) for _ in range(args.repeat)]
        how = "side by side" if threads == 1 else "one after the other"
        print(f"two jobs, threads={threads} ({how}): wall {min(walls):.2f} s (best of "
              f"{args.repeat})")  # fmt: skip
        results[f"two jobs threads={threads}"] = {"wall_s": min(walls)}
    steps = interpolation_only(staged)
    n = steps["output_voxels"] / 1e6
    for key, value in steps.items():
        if key.endswith("_cpu_s"):
            print(f"step {key[:-6]:26} {value:.2f} s CPU = {n / value:.0f} M voxels/s")
    sys.path.insert(0, str(HERE))
    from release import startup_real

    for label, value in startup_real(work / "startup").items():
        print(f"start-up {label:28} best of 5 {value:.3f} s")
    print(json.dumps({"jobs": results, "steps": steps}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
