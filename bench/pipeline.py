"""Pipeline benchmark: the whole workflow vs the I/O floor vs a naive loop, same data.

Workload: N synthetic volumes of real MiniVess size (512 x 512, release-like Z and
spacing; volumes with in-plane spacing near 1 um, so the 1 um output stays ~1x the
input in-plane and ~2x in Z) served by the local fake EBRAINS data-proxy on
127.0.0.1. Three ways of turning them into the bundle's data, run side by side:

1. workflow: ``snakemake --cores 2 all`` with ``source: ebrains`` pointed at the fake
   server, ``volumes`` = the N volumes, drift: every default type, levels [1, 3, 5],
   on one held-out volume (``drift.volumes: [<first volume>]``; the default ``auto``
   would pick mv05 *and* mv15 here, doubling the drift work for N=3). Wall and CPU
   (children's rusage: snakemake and every job), and per rule from benchmarks/**.tsv.
2. floor: one Python process, no orchestration (``--stage floor``): one httpx client
   downloads the listing and every file (MD5 checked against the listing), each file
   is decompressed once (isal), validated on the arrays (intensity histogram stats,
   label values, foreground fraction, shape/affine agreement), resampled in memory
   (the workflow's SimpleITK code, one slab, 2 threads, same spacing/interpolators),
   drifted in memory with the same transforms, seeds and verification figures
   (KS, topology, ...), every output gzip'ed once with the same codec (isal level 2)
   and written once (bag payload: raw, processed, drift; then the tar of it), and
   sha256 + sha512 of every output taken from memory (the bag's manifests).
   It omits: the report figures (PNG MIPs, gallery), the independent verification
   (re-reading the bag and the tar), provenance/RO-Crate/DVC/datasheet JSON, the
   renamed inventory, per-job logs and records, fsync, and the copies that staging ->
   renamed -> bag make. So it is a lower bound, not an equivalent program.
3. naive (``--stage naive``): what a user would write from the dataset plan: download
   each file (httpx), ``nib.load`` + ``get_fdata()``, SimpleITK resample to 1 um
   (linear / nearest), ``nib.save`` to .nii.gz (nibabel's default gzip level, 1) —
   and the same drift types/levels via ``apply_drift`` on the same volume, each saved
   with ``nib.save``. No validation, checksums, bag or archive, and no drift checks.
4. naive + checks (``--stage naive-checked``): the same loop plus the drift checks the
   plan asks for (KS p-value, SNR, blur, Betti-0/Euler, clDice) written the textbook
   way but sampled and skipped like the workflow: ``scipy.stats.ks_2samp`` on the same
   seeded 200 k-voxel subsample ``metrics.ks_test`` draws, an FFT of the volume,
   skimage ``label``/``euler_number``/``skeletonize``; covariate variants (voxels
   untouched) get one array comparison, as in the workflow. It produces what the
   workflow produces (data + the figures proving each variant), so naive+checks /
   workflow is the like-for-like ratio; naive / workflow (less output) is printed
   beside it, favourable or not.

The drift variants come from the workflow's drift plan (``release.plan_jobs``: the
package's ``minivess_bundle.drift.plan`` once merged, the bench's marked copy before) and
every results path from ``minivess_bundle.core.layout``. ``--release`` runs the release-scale
measurement instead (all 70 volumes at 512 px, two floors): see ``bench/release.py``.

Also: no-op rerun (``snakemake all`` when up to date) at N and at 70 volumes (70 tiny
synthetic volumes built once, ``--no-noop70`` skips them), dry-run DAG time at 70
volumes, each also with a stub ``scontrol`` first on PATH (see :func:`stub_scontrol`:
the SLURM plugin's import-time probe), peak RSS
per job vs its uncompressed input + output (benchmark tsv + NIfTI headers), start-up of
real jobs (validate and resample of a 32^3 pair, best of 5), and output size and time of
isal 2 vs zlib 6 on the processed images. ``--scaling`` (off by default) adds
workflow wall time at N = 1, 2, 4, 8 (fresh directories; the drift work is constant).

    python bench/pipeline.py --volumes 3
    python bench/pipeline.py --release                 # 70 volumes, 512 px, 2 cores
    python bench/pipeline.py --release --volumes 10    # the first 10 (mv01..mv10)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402
from release import drift_variants  # noqa: E402  (the workflow's drift job, in process)
from workflow_utils import make_workdir  # noqa: E402  (one config writer for tests and bench)

from minivess_bundle.drift.kinds import TRANSFORMS  # noqa: E402
from minivess_bundle.drift.plan import with_defaults  # noqa: E402

SEED = 20230301
# In-plane spacing near 1 um (output ~ input in-plane), modest Z; mv05 is a default
# held-out (drift) volume.
CANDIDATES = ("mv05", "mv15", "mv26", "mv36", "mv08", "mv48", "mv23", "mv29")
# The workflow's default drift kinds and levels (config/config.yaml, through the plan).
_DRIFT_DEFAULTS = with_defaults(
    yaml.safe_load((REPO / "config" / "config.yaml").read_text())["drift"]
)
DRIFT_TYPES = tuple(_DRIFT_DEFAULTS["types"])
LEVELS = tuple(_DRIFT_DEFAULTS["levels"])
#: Kinds that change the mask (the naive loop hands them the label array).
LABEL_KINDS = {kind for kind, cls in TRANSFORMS.items() if cls.target == "label"}
TARGET_UM = [1.0, 1.0, 1.0]
CODEC, LEVEL = "isal", 2


def _env(path_prefix: Path | None = None) -> dict[str, str]:
    bindir = Path(sys.executable).parent
    first = f"{path_prefix}{os.pathsep}{bindir}" if path_prefix else str(bindir)
    return dict(os.environ, PATH=f"{first}{os.pathsep}{os.environ.get('PATH', '')}")


def timed(
    command: list[str], cwd: Path | None = None, check: bool = True, path_prefix=None
) -> dict:
    """Run a command; wall seconds and CPU seconds (user + sys of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=_env(path_prefix), capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and result.returncode != 0:
        raise SystemExit(
            f"{' '.join(command[:4])} ... failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "stdout": result.stdout, "stderr": result.stderr}


def snakemake(workdir: Path, *args: str, check: bool = True, path_prefix=None) -> dict:
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    command = [exe, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return timed(command, cwd=workdir, check=check, path_prefix=path_prefix)


def stub_scontrol(folder: Path) -> Path:
    """A folder holding an ``scontrol`` that fails at once, to put first on PATH.

    snakemake-executor-plugin-slurm runs ``scontrol show config`` when it is imported
    (every snakemake start) wherever ``sinfo`` is on PATH; with SLURM clients but no
    reachable controller (this machine when SLURM is down) that waits ~9 s. A
    workstation without SLURM skips the probe and a login node answers it at once:
    the stub stands for both.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stub = folder / "scontrol"
    stub.write_text("#!/bin/sh\nexit 1\n")
    stub.chmod(0o755)
    return folder


def make_release(root: Path, volumes: list[str]) -> None:
    from minivess_bundle.core.volumes import EBRAINS_LICENCE
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    for volume in volumes:
        write_synthetic_volume(root, volume, seed=SEED, size_xy=512)
    (root / EBRAINS_LICENCE).write_bytes(b"%PDF-1.4 stand-in\n")


def ebrains_workdir(path: Path, api_base: str, volumes: list[str]) -> Path:
    from fake_dataproxy import DATASET_ID

    return make_workdir(
        path,
        source="ebrains",
        volumes=volumes,
        ebrains={"api_base": api_base, "dataset_id": DATASET_ID, "max_attempts": 3},
        drift={"volumes": volumes[:1], "levels": list(LEVELS)},
    )


# --------------------------------------------------------------------------- floor


def plan(volume: str) -> list:
    """Every drift job of ``volume`` from the workflow's drift plan (``drift.plan``) with
    this bench's drift config."""
    from minivess_bundle.drift.plan import plan_jobs

    config = {
        "enabled": True,
        "volumes": [volume],
        "types": list(DRIFT_TYPES),
        "levels": list(LEVELS),
        "gradual": {"base": "intensity", "n_batches": 3, "max_severity": 1.0},
    }
    return plan_jobs([volume], config)


def severity(job) -> float:
    """The severity a plan job runs at (gradual: its batch's)."""
    from minivess_bundle.drift.variant import VariantSpec

    return VariantSpec(job.volume, job.kind, job.level, SEED, dict(job.params)).severity()


def floor(api_base: str, volumes: list[str], out: Path) -> dict:
    """The I/O floor in one process (see the module docstring for what it includes)."""
    import types

    import httpx
    import nibabel as nib
    import numpy as np
    from fake_dataproxy import DATASET_ID

    from minivess_bundle.core.nifti import gunzip_bytes, gzip_bytes
    from minivess_bundle.core.volumes import EBRAINS_LICENCE, staging_names
    from minivess_bundle.fetch import ebrains
    from minivess_bundle.resample import output_affine_mm, output_grid, resample_slab
    from minivess_bundle.resample.grid import _output_header
    from minivess_bundle.resample.kernels import _to_uint16
    from minivess_bundle.validate import intensity_stats, label_values

    settings = ebrains.ClientSettings(api_base=api_base, dataset_id=DATASET_ID)
    payload: dict[str, bytes] = {}  # bag path -> bytes (written once, hashed from memory)
    downloaded = 0
    with httpx.Client(follow_redirects=True, timeout=60) as client:
        listing = client.get(settings.dataset_url(), params={"limit": 1000}).json()
        entries = {e["name"]: e for e in listing["objects"]}
        raw: dict[str, bytes] = {}
        for volume in volumes:
            for name in staging_names(volume).values():
                data = client.get(ebrains.object_url(settings, name)).content
                if hashlib.md5(data).hexdigest() != entries[name]["hash"]:
                    raise SystemExit(f"md5 mismatch: {name}")
                raw[name] = data
                downloaded += len(data)
        licence = client.get(ebrains.object_url(settings, EBRAINS_LICENCE)).content
    payload[f"data/raw/metadata/{EBRAINS_LICENCE}"] = licence
    reports = {}
    for index, volume in enumerate(volumes):
        names = staging_names(volume)
        payload[f"data/raw/imagesTr/{volume}.nii.gz"] = raw[names["image"]]
        payload[f"data/raw/labelsTr/{volume}.nii.gz"] = raw[names["label"]]
        payload[f"data/raw/metadata/{volume}.json"] = raw[names["metadata"]]
        payload[f"data/processed/metadata/{volume}.json"] = raw[names["metadata"]]
        img = nib.Nifti1Image.from_bytes(gunzip_bytes(raw.pop(names["image"])))
        lbl = nib.Nifti1Image.from_bytes(gunzip_bytes(raw.pop(names["label"])))
        image, label = np.asanyarray(img.dataobj), np.asanyarray(lbl.dataobj)
        # validate: the statistics the validate job computes on the arrays
        values = label_values(label)
        reports[volume] = {
            "stats": intensity_stats(image),
            "values": values,
            "fg": float(np.count_nonzero(label)) / label.size,
            "same_grid": image.shape == label.shape
            and np.allclose(img.affine, lbl.affine, atol=1e-4),
            "json": json.loads(raw[names["metadata"]]),
        }
        # resample: the workflow's SimpleITK code, whole volume as one slab
        affine_um = np.array(img.header.get_best_affine(), dtype=float)
        spacing = [float(v) for v in np.linalg.norm(affine_um[:3, :3], axis=0)]
        grid = output_grid(image.shape, spacing, TARGET_UM)
        affine_mm = output_affine_mm(affine_um, spacing, grid)
        nz_in, nz = image.shape[2], grid["shape"][2]
        processed = {}
        for role, array, interp, dtype, src in (
            ("image", image, "linear", "<u2", img),
            ("label", label, "nearest", "u1", lbl),
        ):
            zyx = resample_slab(array.T, spacing, grid, 0, nz, 0, nz_in, interp, role == "image", 2)
            if role == "image":
                zyx, _ = _to_uint16(zyx)
            else:
                zyx = zyx.astype("u1", copy=False)
                assert set(np.flatnonzero(np.bincount(zyx.reshape(-1))).tolist()) <= {0, 1}
            head = _output_header(
                types.SimpleNamespace(header=src.header), grid["shape"], affine_mm, dtype
            )
            body = head + np.ascontiguousarray(zyx).tobytes()
            processed[role] = body
            sub = "imagesTr" if role == "image" else "labelsTr"
            payload[f"data/processed/{sub}/{volume}.nii.gz"] = gzip_bytes(body, CODEC, LEVEL)
        del image, label, img, lbl
        if index != 0:  # drift: the first volume only
            continue
        # drift: the workflow's own drift job function, in this process (decode, transform,
        # verify, encode: the same work as the drift jobs, without their start-up)
        scratch = out / "drift-scratch"
        clean = {}
        for role, sub in (("image", "imagesTr"), ("label", "labelsTr")):
            clean[role] = scratch / f"{role}.nii.gz"
            clean[role].parent.mkdir(parents=True, exist_ok=True)
            clean[role].write_bytes(payload[f"data/processed/{sub}/{volume}.nii.gz"])
        payload.update(drift_variants(clean["image"], clean["label"], plan(volume), scratch))
        shutil.rmtree(scratch, ignore_errors=True)
    payload["data/validation_report.json"] = json.dumps(reports, default=str).encode()
    # write every output once; manifests from memory; then the tar of the bag
    bag = out / "bag"
    manifests = {"sha256": [], "sha512": []}
    written = 0
    for rel in sorted(payload):
        data = payload[rel]
        path = bag / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written += len(data)
        for algo in manifests:
            manifests[algo].append(f"{hashlib.new(algo, data).hexdigest()}  {rel}\n")
    for algo, lines in manifests.items():
        payload[f"manifest-{algo}.txt"] = "".join(lines).encode()
        (bag / f"manifest-{algo}.txt").write_bytes(payload[f"manifest-{algo}.txt"])
    with (
        open(out / "bag.tar", "wb") as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in sorted(payload):
            info = tarfile.TarInfo(f"bag/{rel}")
            info.size, info.mtime = len(payload[rel]), 1677628800
            tar.addfile(info, io.BytesIO(payload[rel]))
    written += (out / "bag.tar").stat().st_size
    return {"downloaded": downloaded, "written": written, "files": len(payload)}


# --------------------------------------------------------------------------- naive


def textbook_figures(kind: str, clean, drifted, mask) -> dict:
    """The plan's drift checks written the textbook way, sampled like the workflow:
    ``scipy.stats.ks_2samp`` on the same seeded 200 k-voxel subsample the workflow's
    ``metrics.ks_test`` draws (not all voxels), background SNR, FFT energy above half
    Nyquist, skimage labels / Euler number / skeletons for Betti-0 and clDice. Covariate
    variants (voxels untouched) get what the workflow computes for them: one array
    comparison, no intensity figures."""
    import numpy as np
    from scipy import stats
    from skimage.measure import euler_number, label
    from skimage.morphology import skeletonize

    from minivess_bundle.core.metrics import KS_MAX_SAMPLES

    figures = {}
    if kind == "covariate":
        return {"voxels_identical": bool(np.array_equal(clean, drifted))}
    if kind == "topology":
        a, b = clean > 0, drifted > 0
        for name, m in (("before", a), ("after", b)):
            figures[f"betti0_{name}"] = int(label(m, connectivity=3).max())
            figures[f"euler_{name}"] = int(euler_number(m, connectivity=3))
        sa, sb = skeletonize(a), skeletonize(b)
        tprec, tsens = (sb & a).sum() / max(sb.sum(), 1), (sa & b).sum() / max(sa.sum(), 1)
        figures["cldice"] = float(2 * tprec * tsens / max(tprec + tsens, 1e-12))
        return figures
    c, d = np.asarray(clean, np.float64), np.asarray(drifted, np.float64)
    index = slice(None)
    if c.size > KS_MAX_SAMPLES:  # the workflow's sample: same generator, same positions
        rng = np.random.default_rng(0)
        index = np.sort(rng.choice(c.size, size=KS_MAX_SAMPLES, replace=False))
    ks = stats.ks_2samp(c.ravel()[index], d.ravel()[index])
    figures.update(ks=float(ks.statistic), p=float(ks.pvalue), mean=(c.mean(), d.mean()))
    figures.update(std=(c.std(), d.std()))
    if kind == "noise":
        fg = mask > 0
        figures["snr"] = [float((v[fg].mean() - v[~fg].mean()) / v[~fg].std()) for v in (c, d)]
    if kind == "resolution":
        for name, v in (("before", c), ("after", d)):
            power = np.abs(np.fft.fftn(v - v.mean())) ** 2
            radius = np.sqrt(
                sum(
                    np.fft.fftfreq(n).reshape([-1 if i == j else 1 for j in range(3)]) ** 2
                    for i, n in enumerate(v.shape)
                )
            )
            figures[f"hf_{name}"] = float(power[radius > 0.25].sum() / power.sum())
    return figures


def naive(api_base: str, volumes: list[str], out: Path, checked: bool = False) -> dict:
    """nibabel load / SimpleITK resample / nibabel save loop (+ the same drift; with
    ``checked``, + the plan's drift checks the textbook way)."""
    import httpx
    import nibabel as nib
    import numpy as np
    import SimpleITK as sitk
    from fake_dataproxy import DATASET_ID

    from minivess_bundle.core.volumes import staging_names
    from minivess_bundle.drift import apply_drift

    base = f"{api_base}/v1/datasets/{DATASET_ID}"
    out.mkdir(parents=True, exist_ok=True)
    figures: dict = {}
    for index, volume in enumerate(volumes):
        names = staging_names(volume)
        local = {}
        for key in ("image", "label"):
            local[key] = out / f"{volume}_{key}_in.nii.gz"
            response = httpx.get(f"{base}/{names[key]}", follow_redirects=True, timeout=60)
            local[key].write_bytes(response.content)
        arrays = {}
        for key, interp in (("image", sitk.sitkLinear), ("label", sitk.sitkNearestNeighbor)):
            nii = nib.load(local[key])
            data = nii.get_fdata()
            zooms = [float(z) for z in nii.header.get_zooms()[:3]]
            src = sitk.GetImageFromArray(data.T.astype(np.float32))
            src.SetSpacing(zooms)
            size = [int(round(n * s)) for n, s in zip(data.shape, zooms, strict=True)]
            res = sitk.Resample(src, size, sitk.Transform(), interp, (0, 0, 0), (1.0, 1.0, 1.0))
            arr = sitk.GetArrayFromImage(res).T
            arr = np.clip(np.rint(arr), 0, 65535).astype(np.uint16 if key == "image" else np.uint8)
            affine = np.diag([0.001, 0.001, 0.001, 1.0])
            nib.save(nib.Nifti1Image(arr, affine), out / f"{volume}_{key}.nii.gz")
            arrays[key] = arr
        if index != 0:
            continue
        for job in plan(volume):
            kind, level = job.kind, job.level
            spacing = {"spacing": (1.0, 1.0, 1.0)}  # the resampled grid, in micrometres
            params = spacing if kind in ("covariate", "attenuation", "depth_blur") else {}
            if kind == "gradual":
                params = {"n_batches": job.params["n_batches"]}
            target = "label" if kind in LABEL_KINDS else "image"
            drifted = apply_drift(arrays[target], kind, severity(job), seed=level, **params)
            if kind == "gradual":
                drifted = drifted[level - 1]
            if checked:
                figures[f"{kind}/{level}"] = textbook_figures(
                    kind, arrays[target], drifted, arrays["label"]
                )
            nib.save(
                nib.Nifti1Image(np.asarray(drifted), np.diag([0.001] * 3 + [1.0])),
                out / f"{volume}_{kind}_{level}.nii.gz",
            )
    if checked:
        (out / "figures.json").write_text(json.dumps(figures, indent=1, default=float))
    return {"figures": len(figures)}


# --------------------------------------------------------------------------- figures


def rule_table(workdir: Path) -> list[dict]:
    rows = []
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        rel = tsv.relative_to(workdir / "benchmarks").with_suffix("")
        rows.append(
            {
                "job": rel.as_posix(),
                "rule": rel.parts[0],
                "s": float(row["s"]),
                "max_rss": float(row["max_rss"]) if row["max_rss"] != "NA" else 0.0,
            }
        )
    return rows


def uncompressed(path: Path) -> int:
    from minivess_bundle.core.nifti import read_header

    if not path.is_file():
        return 0
    info = read_header(path, check_size=False)
    return info.vox_offset + info.data_bytes


def job_bytes(workdir: Path, job: str) -> int:
    """Uncompressed NIfTI bytes a job reads + writes (from the headers)."""
    from minivess_bundle.core import layout

    parts = job.split("/")
    vol = parts[-1]
    if parts[0] not in ("fetch", "validate", "resample", "drift"):
        return 0

    def pair(files: dict[str, str]) -> list[Path]:
        return [workdir / files["image"], workdir / files["label"]]

    files = {
        "fetch": pair(layout.renamed(vol)),  # writes them (download, moved to their names)
        "validate": pair(layout.renamed(vol)),
        "resample": pair(layout.renamed(vol)) + pair(layout.processed(vol)),
    }.get(parts[0])
    if parts[0] == "drift":  # drift/<kind>/<vol>: every level; drift/gradual/<batch>/<vol>
        levels = parts[2:-1] or [str(level) for level in LEVELS]
        files = pair(layout.processed(vol))
        for level in levels:
            files += pair(layout.drift_variant(parts[1], level, vol))
    if files is None:
        return 0
    return sum(uncompressed(p) for p in files)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def run_stage(stage: str, api_base: str, volumes: list[str], out: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--stage",
        stage,
        "--api-base",
        api_base,
        "--out",
        str(out),
        "--volume-list",
        ",".join(volumes),
    ]
    return timed(command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=3, help="N volumes (default 3)")
    parser.add_argument("--scaling", action="store_true", help="also time N = 1, 2, 4, 8")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a tmp dir)")
    parser.add_argument(
        "--release",
        action="store_true",
        help="release scale: all 70 volumes (or --volumes N) at --size px, default drift, "
        "both floors (see bench/release.py)",
    )
    parser.add_argument("--size", type=int, default=512, help="--release: in-plane px (512)")
    parser.add_argument("--cores", type=int, default=2, help="--release: cores (2)")
    parser.add_argument(
        "--no-noop70", action="store_true", help="skip building 70 tiny volumes for the no-op"
    )
    parser.add_argument(
        "--stage", choices=("floor", "naive", "naive-checked"), help=argparse.SUPPRESS
    )
    parser.add_argument("--api-base", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--volume-list", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.release:
        import release

        n = args.volumes if "--volumes" in sys.argv else None
        release.main(n, args.size, args.cores, args.keep)
        return
    if args.stage:
        volume_list = args.volume_list.split(",")
        if args.stage == "floor":
            print(json.dumps(floor(args.api_base, volume_list, args.out)))
        else:
            checked = args.stage == "naive-checked"
            print(json.dumps(naive(args.api_base, volume_list, args.out, checked=checked)))
        return
    from fake_dataproxy import FakeDataProxy

    from minivess_bundle.fetch.synthetic import draw_acquisition
    from minivess_bundle.resample import output_grid

    n = args.volumes
    wanted = max(n, 8) if args.scaling else n
    volumes = list(CANDIDATES[:wanted])
    tmp = tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.keep)
    work = Path(tmp)
    release = work / "release"
    make_release(release, volumes)
    input_bytes = {v: sum(f.stat().st_size for f in release.rglob(f"{v}*")) for v in volumes}
    print(f"work: {work}")
    print("volumes (shape, spacing um -> 1 um grid):")
    for v in volumes[:n]:
        acq = draw_acquisition(SEED, v, 512, 110)
        grid = output_grid(acq.shape, acq.spacing_um, TARGET_UM)["shape"]
        print(
            f"  {v}: {acq.shape} @ {acq.spacing_um} -> {tuple(grid)}  "
            f"({input_bytes[v] / 1e6:.1f} MB compressed)"
        )
    total_in = sum(input_bytes[v] for v in volumes[:n])
    print(
        f"drift: {volumes[0]} x {len(DRIFT_TYPES)} types, levels {list(LEVELS)} "
        f"({len(plan(volumes[0]))} variants)"
    )
    results: dict = {}
    with FakeDataProxy(release) as proxy:
        wd = ebrains_workdir(work / "wf", proxy.api_base, volumes[:n])
        results["workflow"] = snakemake(wd, "--cores", "2", "all")
        results["noop"] = snakemake(wd, "--cores", "2", "all")
        results["floor"] = run_stage("floor", proxy.api_base, volumes[:n], work / "floor")
        results["naive"] = run_stage("naive", proxy.api_base, volumes[:n], work / "naive")
        results["checked"] = run_stage(
            "naive-checked", proxy.api_base, volumes[:n], work / "naive-checked"
        )
        scaling = {}
        if args.scaling:
            for k in (1, 2, 4, 8):
                swd = ebrains_workdir(work / f"scale{k}", proxy.api_base, volumes[:k])
                scaling[k] = snakemake(swd, "--cores", "2", "all")["wall"]
                shutil.rmtree(swd / "results")
    noop_out = results["noop"]["stdout"] + results["noop"]["stderr"]
    # 70 volumes, tiny (32 x 32 x <= 16, native spacing): the DAG, the no-op and the
    # dry run cost what the number of jobs and files costs, not the voxels.
    stub = stub_scontrol(work / "stub-bin")
    seventy = make_workdir(
        work / "wf70",
        source="synthetic",
        volumes="all",
        synthetic={"size_xy": 32, "max_z": 16},
        resample={"target_spacing_um": "native"},
    )
    # --quiet: with the profile's printshellcmds a fresh dry run fails formatting the bundle
    # job's shell command (its input function needs the validation checkpoint).
    dry_args = ("--cores", "2", "all", "--dry-run", "--quiet")
    results["dry70"] = snakemake(seventy, *dry_args)
    results["dry70_stub"] = snakemake(seventy, *dry_args, path_prefix=stub)
    if not args.no_noop70:
        results["build70"] = snakemake(seventy, "--cores", "2", "all")
        results["noop70"] = snakemake(seventy, "--cores", "2", "all")
        results["noop70_stub"] = snakemake(seventy, "--cores", "2", "all", path_prefix=stub)
        files70 = sum(1 for p in (seventy / "results").rglob("*") if p.is_file())
    probe = None
    if shutil.which("sinfo") and shutil.which("scontrol"):  # the SLURM plugin's import probe
        probe = timed(["scontrol", "show", "config"], check=False)["wall"]
    from release import codec_times, startup_real

    starts = startup_real(work / "startup")
    rules = rule_table(wd)
    sizes = codec_times(wd)
    floor_out = json.loads(results["floor"]["stdout"].strip().splitlines()[-1])

    w, f, nv = results["workflow"], results["floor"], results["naive"]
    ck = results["checked"]
    print(
        f"\ninput: {len(volumes[:n])} volumes, {total_in / 1e6:.1f} MB compressed "
        f"(floor wrote {floor_out['written'] / 1e6:.1f} MB in {floor_out['files']} files)"
    )
    print(f"{'':10} {'wall s':>8} {'cpu s':>8} {'MB/s in':>8}")
    for name, r in (("workflow", w), ("floor", f), ("naive", nv), ("naive+chk", ck)):
        print(f"{name:10} {r['wall']:8.1f} {r['cpu']:8.1f} {total_in / r['wall'] / 1e6:8.2f}")
    ratio_wf, ratio_nv = w["wall"] / f["wall"], nv["wall"] / w["wall"]
    print(
        f"workflow/floor wall {ratio_wf:.2f}x (cpu {w['cpu'] / f['cpu']:.2f}x)  "
        f"target <= 2  {verdict(ratio_wf <= 2)}"
    )
    ratio_ck = ck["wall"] / w["wall"]
    print(
        f"naive/workflow wall {ratio_nv:.2f}x (cpu {nv['cpu'] / w['cpu']:.2f}x): the loop "
        f"without the drift checks (less output than the workflow)"
    )
    print(
        f"naive+checks/workflow wall {ratio_ck:.2f}x (cpu {ck['cpu'] / w['cpu']:.2f}x): same "
        f"outputs, the plan's checks the textbook way  target >= 3  {verdict(ratio_ck >= 3)}"
    )

    print("\nper rule (benchmark tsv): jobs, sum s, max s, max max_rss MB, worst RSS/(in+out)")
    by_rule: dict[str, list] = {}
    for row in rules:
        row["bytes"] = job_bytes(wd, row["job"])
        row["ratio"] = row["max_rss"] * 2**20 / row["bytes"] if row["bytes"] else None
        by_rule.setdefault(row["rule"], []).append(row)
    worst = None
    for rule, rows in by_rule.items():
        # the benchmark sampler misses sub-second jobs (max_rss of a few MB): left out
        ratios = [r for r in rows if r["ratio"] is not None and r["max_rss"] >= 20]
        top = max(ratios, key=lambda r: r["ratio"]) if ratios else None
        if top and (worst is None or top["ratio"] > worst["ratio"]):
            worst = top
        print(
            f"  {rule:10} {len(rows):4d} {sum(r['s'] for r in rows):8.1f} "
            f"{max(r['s'] for r in rows):7.2f} {max(r['max_rss'] for r in rows):8.0f}  "
            + (
                f"{top['ratio']:.2f} ({top['job']}: {top['max_rss']:.0f} MB vs "
                f"{top['bytes'] / 2**20:.0f} MiB)"
                if top
                else "-"
            )
        )
    print(
        f"sum of job wall (tsv) {sum(r['s'] for r in rules):.1f} s over {len(rules)} jobs "
        f"(+ jobs without a benchmark: listing, place, inventory, validation-report, "
        f"drift-set/manifest, verify, report)"
    )
    if worst:
        print(
            f"peak RSS / (uncompressed in+out): worst {worst['ratio']:.2f} ({worst['job']})  "
            f"target <= 3  {verdict(worst['ratio'] <= 3)}"
        )

    noop = results["noop"]["wall"]
    nothing = "Nothing to be done" in noop_out
    print(f"\nno-op rerun at N={n}: {noop:.2f} s (nothing to do: {nothing})")
    for key, label in (("dry70", "dry-run DAG at 70 volumes"), ("noop70", "no-op at 70 volumes")):
        if key not in results:
            continue
        plain, stubbed = results[key], results[f"{key}_stub"]
        print(
            f"{label}: {plain['wall']:.2f} s (CPU {plain['cpu']:.2f} s); without the SLURM "
            f"plugin's probe (stub scontrol): {stubbed['wall']:.2f} s (CPU {stubbed['cpu']:.2f} s)"
            + (f"  target <= 3 s  {verdict(stubbed['wall'] <= 3)}" if key == "noop70" else "")
        )
    if "build70" in results:
        out70 = results["noop70"]["stdout"] + results["noop70"]["stderr"]
        print(
            f"  (70-volume build {results['build70']['wall']:.0f} s, {files70} files under "
            f"results/; nothing to do on rerun: {'Nothing to be done' in out70})"
        )
    if probe is not None:
        print(
            f"SLURM plugin probe at every snakemake start (`scontrol show config`, "
            f"no controller reachable): {probe:.2f} s"
        )
    print(f"no-op at N={n} CPU {results['noop']['cpu']:.2f} s")
    base = starts["python -c pass"]
    for label, value in starts.items():
        print(f"start-up {label:32} best of 5 {value:.3f} s  (+{value - base:.3f} s)")
    worst_start = max(v for k, v in starts.items() if k != "python -c pass")
    print(f"per-job start-up (real jobs) target <= 0.3 s  {verdict(worst_start <= 0.3)}")
    delta = sizes["isal2"] / sizes["zlib6"] - 1
    print(
        f"\nprocessed outputs ({sizes['raw'] / 1e6:.1f} MB raw): isal 2 "
        f"{sizes['isal2'] / 1e6:.2f} MB in {sizes['isal2_s']:.2f} s, zlib 6 "
        f"{sizes['zlib6'] / 1e6:.2f} MB in {sizes['zlib6_s']:.2f} s: isal "
        f"{sizes['zlib6_s'] / sizes['isal2_s']:.0f}x faster, {100 * delta:+.1f} % size  "
        f"target within 5 %  {verdict(abs(delta) <= 0.05)}"
    )
    if scaling:
        ks, ts = list(scaling), list(scaling.values())
        mean_k, mean_t = sum(ks) / len(ks), sum(ts) / len(ts)
        slope = sum((k - mean_k) * (t - mean_t) for k, t in zip(ks, ts, strict=True)) / sum(
            (k - mean_k) ** 2 for k in ks
        )
        fitted = [mean_t + slope * (k - mean_k) for k in ks]
        worst = max(abs(t - f) / t for t, f in zip(ts, fitted, strict=True))
        print(
            "scaling: "
            + ", ".join(f"N={k}: {s:.1f} s" for k, s in scaling.items())
            + f"; least squares {mean_t - slope * mean_k:.1f} s + {slope:.2f} s/volume, "
            f"worst deviation from the line {100 * worst:.1f} %"
        )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
