"""Memory to ask a scheduler for, per job, from the files it will read.

An estimate starts from the NIfTI header, but a header is untrusted input: a
file whose header claims 30000^3 voxels must not make a job ask SLURM for 300 TB.
Every estimate is therefore computed for at most the voxels the file on disk can
plausibly hold (:func:`plausible_voxels`: a gzip stream expands at most
:data:`~minivess_bundle.core.nifti.MAX_DEFLATE_RATIO`:1, a ``.nii`` holds its size),
and a job retried after running out of memory asks for more each attempt
(:func:`for_attempt`). A file that is missing or unreadable gets a fixed
fallback; the job itself then reports the problem.

Light imports only: the workflow calls these while it builds the DAG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

#: SLURM submissions (the rules' ``group:``, from :func:`submission_group`; inactive in a
#: local run). Two queued submissions on the critical path, whatever the number of volumes:
#:
#: * fetch -> rename -> validate are localrules (the Snakefile): they run on the submit host,
#:   which has the internet access compute nodes often lack, and cost I/O, not CPU; so no
#:   submission waits in the queue before the validation checkpoint;
#: * the resample -> drift jobs of ``VOLUMES_PER_SUBMISSION`` volumes are one submission
#:   (group ``process_<first>-<last>``; 70 volumes: 35), laid out on at most ``cores`` CPUs
#:   (profiles/slurm), so the drift volume's jobs run side by side in one job;
#: * the tail, ``bundle`` -> ``verify_bundle`` and ``report_figures``, is one submission
#:   (group ``GROUP_TAIL``; ``report_mips`` goes alone, beside the drift jobs).
#:
#: (Snakemake's own ``--group-components`` would do the joining of volumes, but Snakemake
#: 9.27 joins already joined groups again each time it updates the DAG: 3 volumes at 2 per
#: job became one job. Naming the groups here is exact and deterministic.)
GROUP_PROCESS = "process"
GROUP_TAIL = "tail"
VOLUMES_PER_SUBMISSION = 2
#: The most CPUs one submission asks for (profiles/slurm ``cores``): a group's jobs that
#: could run side by side are laid out to fit it, so the drift volume's 18 drift jobs run
#: 8 at a time in its submission (3 rounds, not 9 at 2 CPUs). Lower it to the CPUs of the
#: cluster's smallest node (the CI's single node: ``--cores 2``).
GROUP_CORES = 8


def submission_group(
    stage: str, volume: str, volumes: Sequence[str], per_submission: int = VOLUMES_PER_SUBMISSION
) -> str:
    """The SLURM group of ``volume``'s ``stage`` jobs: ``volumes`` in their order,
    ``per_submission`` at a time, named after the first and last volume of the run
    (``process_mv01-mv02``). A volume not in ``volumes`` gets a group of its own."""
    volumes = list(volumes)
    if per_submission < 1:
        raise ValueError(f"per_submission must be >= 1, got {per_submission}")
    if volume not in volumes:
        return f"{stage}_{volume}"
    start = volumes.index(volume) // per_submission * per_submission
    chunk = volumes[start : start + per_submission]
    return f"{stage}_{chunk[0]}" + (f"-{chunk[-1]}" if len(chunk) > 1 else "")


#: Each retry asks for this much more than the first attempt (1.0, 1.5, 2.0, ...).
ATTEMPT_GROWTH = 0.5
#: What a job asks for when its input cannot be read yet (MiB).
FALLBACK_MB = 2048
#: Interpreter + numpy + nibabel (+ SimpleITK where loaded), MiB.
BASE_MB = {"validate": 300, "drift": 400, "fetch": 300, "omezarr": 400}
#: Bytes held per voxel: validate (image, mask and float statistics), drift (the clean
#: image and mask, float temporaries and one level's output: at most 21 B/voxel measured
#: over the kinds, z_step and compound, between 6.9 M and 15.6 M voxels), synthetic
#: generation (mask, float image, noise), OME-Zarr export (image, mask, their z-y-x copies
#: and the pyramid's float resize: measured 1044 MB peak RSS for 37.2 M voxels).
BYTES_PER_VOXEL = {"validate": 12, "drift": 24, "fetch": 40, "omezarr": 28}
#: Drift kinds that hold more per voxel than ``BYTES_PER_VOXEL["drift"]``: annotation's
#: second-annotator model (skeleton segments, three distance transforms, scipy's int32
#: feature transform, the components of what is kept) and its figures (each level's own
#: skeleton): measured 104.4 B/voxel between 0.43 M and 3.9 M voxels
#: (tests/test_resources.py; 90.6 before the drift did its level-independent work once per
#: job and kept it), with ~7 % headroom.
DRIFT_BYTES_PER_VOXEL = {"annotation": 112}


def for_attempt(mem_mb: int | float, attempt: int = 1) -> int:
    """``mem_mb`` grown for retry ``attempt`` (1 = first run)."""
    return int(math.ceil(mem_mb * (1 + ATTEMPT_GROWTH * (max(1, int(attempt)) - 1))))


def plausible_voxels(path: str | Path) -> tuple[int, int]:
    """``(voxels the header claims, voxels the file can plausibly hold)`` for a NIfTI file."""
    from .core.nifti import MAX_DEFLATE_RATIO, read_header

    info = read_header(path, check_size=False)
    capacity = (
        info.file_bytes * MAX_DEFLATE_RATIO + (1 << 16) if info.compressed else info.file_bytes
    )
    most = max(0, capacity - info.vox_offset) // info.dtype.itemsize
    return info.n_voxels, min(info.n_voxels, most)


def per_voxel_mem_mb(
    stage: str, path: str | Path, attempt: int = 1, bytes_per_voxel: float | None = None
) -> int:
    """Memory of a job holding ``bytes_per_voxel`` (default ``BYTES_PER_VOXEL[stage]``) per
    voxel of the file at ``path``."""
    try:
        _, voxels = plausible_voxels(path)
    except Exception:  # not there yet or unreadable: the job itself reports it
        return for_attempt(FALLBACK_MB, attempt)
    per_voxel = BYTES_PER_VOXEL[stage] if bytes_per_voxel is None else bytes_per_voxel
    return for_attempt(BASE_MB[stage] + voxels * per_voxel / 2**20, attempt)


def drift_mem_mb(kind: str, path: str | Path, attempt: int = 1) -> int:
    """Memory of one drift job of ``kind`` on the clean image at ``path``: the job writes
    every level but holds one level's output at a time, so the levels do not add up."""
    per_voxel = DRIFT_BYTES_PER_VOXEL.get(kind, BYTES_PER_VOXEL["drift"])
    return per_voxel_mem_mb("drift", path, attempt, per_voxel)


def resample_mem_mb(
    path: str | Path,
    spacing_um,
    source_units: str,
    attempt: int = 1,
    fallback: int = 4096,
    interpolator: str = "linear",
    threads: int = 1,
) -> int:
    """Peak memory of one resample job (:func:`~minivess_bundle.resample.
    estimate_resample_mem_mb` for the image's ``interpolator`` and the job's
    ``threads``), its per-voxel part scaled down when the header claims more voxels
    than the file can hold."""
    from .resample import base_mem_mb, estimate_resample_mem_mb

    try:
        claimed, voxels = plausible_voxels(path)
        estimate = estimate_resample_mem_mb(
            path, spacing_um, source_units, interpolator=interpolator, threads=threads
        )
    except Exception:  # not there yet or unreadable: the job itself reports it
        return for_attempt(fallback, attempt)
    scale = voxels / claimed if claimed else 1.0
    base = base_mem_mb(interpolator)
    return for_attempt(base + (estimate - base) * scale, attempt)


def synthetic_mem_mb(size_xy: int, max_z: int, attempt: int = 1) -> int:
    """Memory of generating one synthetic volume of at most ``size_xy^2 * max_z`` voxels."""
    voxels = size_xy**2 * max_z
    return for_attempt(BASE_MB["fetch"] + voxels * BYTES_PER_VOXEL["fetch"] / 2**20, attempt)


#: The report's MIP job: interpreter, numpy, nibabel and matplotlib, MiB.
REPORT_MIPS_BASE_MB = 300
#: ... and one volume's image and mask at a time (3 bytes per voxel, with margin: 187 MB
#: peak RSS measured for a 55 M-voxel volume, 509 x 509 x 212).
REPORT_MIPS_BYTES_PER_VOXEL = 4


def report_mips_mem_mb(paths: list[str | Path], attempt: int = 1, threads: int = 1) -> int:
    """Memory of drawing the MIPs of the volumes at ``paths``, ``threads`` at a time: the
    largest one's, from its header, once per worker; :data:`FALLBACK_MB` per worker when
    none can be read yet."""
    workers = max(1, int(threads))
    largest = 0
    for path in paths:
        try:
            largest = max(largest, plausible_voxels(path)[1])
        except Exception:  # not there yet or unreadable: the job itself reports it
            return for_attempt(FALLBACK_MB * workers, attempt)
    if not largest:
        return for_attempt(FALLBACK_MB * workers, attempt)
    one = REPORT_MIPS_BASE_MB + largest * REPORT_MIPS_BYTES_PER_VOXEL / 2**20
    return for_attempt(one * workers, attempt)
