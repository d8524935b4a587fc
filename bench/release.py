"""Release scale (``python bench/pipeline.py --release``): the whole build measured.

Workload: the 70 synthetic volumes (or the first ``--volumes N``) at ``--size`` px
in-plane (512 like the release), default config (default drift: ``volumes: auto``,
every type, levels 1, 3, 5), on ``--cores`` cores (2).

* **Staging** (not the pipeline's cost): the synthetic release is generated once into
  ``<work>/release/{raw,seg,json}`` by a pool of ``--cores`` processes (timed and printed
  apart; reused when ``--keep`` names a folder that already holds it) and the workflow
  reads it as ``source: dir`` — the path a user with the extracted EBRAINS ZIP takes
  (copy + sha256 of every file, the fetch jobs, is pipeline cost).
* **Workflow**: ``snakemake --cores N all``: wall; CPU = user + sys of the whole process
  tree (``RUSAGE_CHILDREN``: snakemake and every job it waited for); bytes read and
  written by the tree (``/proc/self/io`` rchar/wchar and storage read_bytes/write_bytes,
  which Linux accumulates from reaped children); per rule (benchmarks/**.tsv): jobs,
  summed wall, summed CPU, max RSS; the timeline from snakemake's log (start and
  finish of every job, 1 s resolution): what ran alone, the serial tail after the last
  per-volume job (bundle, drift manifest, verify, report); results/ footprint (each
  inode once) vs the bag's payload; a projection to 8 cores (list scheduling of the
  measured jobs with the DAG's stage order) and to SLURM (one job per heavy rule).
* **Physical floor** (``--cores`` processes): decode every input once and encode every
  output once (isal, the workflow's level), nothing else — the codec work no build of
  these outputs can avoid. The outputs' uncompressed bytes are prepared untimed.
* **Same-work floor** (``--cores`` processes, :func:`same_work_floor`): the single-process
  floor of ``bench/pipeline.py`` (validation arithmetic, resampling, drift transforms
  and their verification figures, isal encode, sha256 + sha512 of every payload file
  from memory) split into tasks — one per volume, one per (drift volume, drift type) —
  over a process pool; then the manifests and the tar in the parent. No orchestration,
  no per-job start-up, no staging -> renamed -> bag copies, no report, no re-verify.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from workflow_utils import make_workdir  # noqa: E402

SEED = 20230301
CODEC, LEVEL = "isal", 2
TARGET_UM = [1.0, 1.0, 1.0]
#: Rules that run once per volume (the parallel part); the rest is the serial tail.
PER_VOLUME = ("fetch", "validate", "resample", "drift")


# --------------------------------------------------------------------------- drift plan


from minivess_bundle.core.spec import to_json as spec_json  # noqa: E402
from minivess_bundle.drift.plan import plan_groups  # noqa: E402  (the workflow's own plan)
from minivess_bundle.fetch.spec import FetchSpec  # noqa: E402
from minivess_bundle.resample import ResampleSpec  # noqa: E402
from minivess_bundle.settings import validated  # noqa: E402
from minivess_bundle.validate.spec import ValidateSpec  # noqa: E402


def drift_variants(
    image: Path, label: Path, jobs: list, scratch: Path, seed: int = SEED
) -> dict[str, bytes]:
    """Every variant ``jobs`` lists (``(volume, kind, level, params)`` plan jobs of one
    volume) made by the workflow's own drift job function, in this process:
    ``{bag path: bytes}``. The same work as the workflow's drift jobs (one per (volume,
    kind): decode once, then transform, verify, encode each level), without their process
    start-up and scheduling."""
    from minivess_bundle.drift.variant import (
        Compression,
        VariantFiles,
        VariantSpec,
        generate_drift_levels,
    )

    groups: dict[tuple[str, str], list] = {}
    for job in jobs:
        groups.setdefault((job.volume, job.kind), []).append(job)
    out = {}
    for (volume, kind), group in groups.items():
        spec = VariantSpec(volume, kind, group[0].level, seed, dict(group[0].params))
        rels, files = [], []
        for job in group:
            rel = {
                role: f"data/drift/{kind}/{job.level}/{sub}/{volume}.nii.gz"
                for role, sub in (("image", "imagesTr"), ("label", "labelsTr"))
            }
            rels.append(rel)
            files.append(VariantFiles(image, label, scratch / rel["image"], scratch / rel["label"]))
        levels = [job.level for job in group]
        generate_drift_levels(spec, levels, files, Compression(CODEC, LEVEL))
        for rel in rels:
            for role in ("image", "label"):
                out[rel[role]] = (scratch / rel[role]).read_bytes()
                (scratch / rel[role]).unlink()
    return out


def default_drift_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["drift"]


# --------------------------------------------------------------------------- staging


def _stage_one(args: tuple) -> str:
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    root, volume, size = args
    write_synthetic_volume(root, volume, seed=SEED, size_xy=size)
    return volume


def stage_release(root: Path, volumes: list[str], size: int, procs: int) -> float | None:
    """Generate the synthetic release into ``root`` (EBRAINS layout); seconds, or None
    when ``root`` already holds it. Volumes already there from a run with the same size,
    seed and generator are kept (the same bytes); only the missing ones are generated."""
    from minivess_bundle.core.volumes import EBRAINS_LICENCE, staging_names
    from minivess_bundle.fetch.synthetic import GENERATOR_VERSION

    stamp = {"size": size, "seed": SEED, "generator": GENERATOR_VERSION}
    stamp_file = root / "bench-stamp.json"
    have: set[str] = set()
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        # same generator, seed and size: volumes already there are the same bytes
        have = {v for v in volumes if all((root / n).is_file() for n in staging_names(v).values())}
        if have == set(volumes):
            return None
    else:
        shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    missing = [v for v in volumes if v not in have]
    order = sorted(missing, key=lambda v: -_input_voxels(v, size))  # big ones first
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_stage_one, [(root, v, size) for v in order]))
    (root / EBRAINS_LICENCE).write_bytes(b"%PDF-1.4 stand-in\n")  # as bench/pipeline.py
    stamp_file.write_text(json.dumps(stamp))
    return time.perf_counter() - start


def _input_voxels(volume: str, size: int) -> int:
    from minivess_bundle.fetch.synthetic import draw_acquisition

    shape = draw_acquisition(SEED, volume, size).shape
    return shape[0] * shape[1] * shape[2]


# --------------------------------------------------------------------------- workflow


def _proc_io() -> dict[str, int]:
    fields = {}
    with open("/proc/self/io") as handle:
        for line in handle:
            key, value = line.split(":")
            fields[key] = int(value)
    return fields


#: ``snakemake`` in a Python that says, at exit, the CPU its own process used (user + sys;
#: RUSAGE_SELF: the scheduler, DAG, logger and localrule bookkeeping, not the jobs).
_SELF_CPU = (
    "import atexit, resource, sys\n"
    "def _own():\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    print(f'snakemake own CPU: {r.ru_utime + r.ru_stime:.2f}', flush=True)\n"
    "atexit.register(_own)\n"
    "from snakemake.cli import main\n"
    "sys.argv[0] = 'snakemake'\n"
    "main()\n"
)


def run_workflow(workdir: Path, cores: int, *targets: str) -> dict:
    """``snakemake --cores N`` on ``workdir``: wall, CPU and I/O of the whole process tree."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [sys.executable, "-c", _SELF_CPU, "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir)]
    command += ["--cores", str(cores), *(targets or ("all",))]
    log = workdir / "bench-snakemake.out"
    io0, ru0 = _proc_io(), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    io1, ru1 = _proc_io(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"snakemake failed ({code}); see {log}:\n{log.read_text()[-3000:]}")
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    io = {key: io1[key] - io0[key] for key in ("rchar", "wchar", "read_bytes", "write_bytes")}
    own = re.findall(r"^snakemake own CPU: ([\d.]+)$", log.read_text(), re.M)
    return {
        "wall": wall,
        "cpu": cpu,
        "io": io,
        "maxrss_mb": ru1.ru_maxrss / 1024,
        "snakemake_cpu": float(own[-1]) if own else float("nan"),
    }


def rule_table(workdir: Path) -> dict[str, dict]:
    """Per rule from benchmarks/**.tsv: jobs, summed wall, summed CPU, max RSS, MB in/out."""
    rules: dict[str, dict] = defaultdict(
        lambda: {"jobs": 0, "s": 0.0, "cpu": 0.0, "max_s": 0.0, "rss": 0.0, "in": 0.0, "out": 0.0}
    )
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        rule = tsv.relative_to(workdir / "benchmarks").parts[0]
        values = {k: float(v) for k, v in row.items() if k != "h:m:s" and v not in ("NA", "-")}
        number = values.get
        entry = rules[rule]
        entry["jobs"] += 1
        entry["s"] += number("s", 0.0)
        entry["cpu"] += number("cpu_time", 0.0)
        entry["max_s"] = max(entry["max_s"], number("s", 0.0))
        entry["rss"] = max(entry["rss"], number("max_rss", 0.0))
        entry["in"] += number("io_in", 0.0)
        entry["out"] += number("io_out", 0.0)
    return dict(rules)


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_DONE = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def timeline(workdir: Path) -> list[dict]:
    """Every job's rule, start and finish (s since the first job) from snakemake's log."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    jobs: dict[str, dict] = {}
    now = rule = None
    for line in logs[-1].read_text().splitlines():
        if m := _STAMP.match(line):
            now = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := _START.match(line):
            rule = m.group(1)
        elif (m := _JOBID.match(line)) and rule:
            jobs[m.group(1)] = {"rule": rule, "start": now}
            rule = None
        elif m := _DONE.match(line):
            jobs.setdefault(m.group(1), {"rule": m.group(2), "start": now})["end"] = now
    done = [j for j in jobs.values() if j.get("end") is not None and j["rule"] != "all"]
    t0 = min(j["start"] for j in done)
    return [{**j, "start": j["start"] - t0, "end": j["end"] - t0} for j in done]


def concurrency(jobs: list[dict]) -> dict:
    """Seconds with 0 jobs running, and per rule the seconds it ran alone; the serial tail
    (from the last per-volume job's finish to the last finish) and what ran in it."""
    end = max(j["end"] for j in jobs)
    alone: dict[str, float] = defaultdict(float)
    idle = 0.0
    for t in range(int(end)):
        running = [j for j in jobs if j["start"] <= t < max(j["end"], j["start"] + 1)]
        if not running:
            idle += 1
        elif len(running) == 1:
            alone[running[0]["rule"]] += 1
    last_parallel = max((j["end"] for j in jobs if j["rule"] in PER_VOLUME), default=0.0)
    tail_rules = sorted({j["rule"] for j in jobs if j["end"] > last_parallel})
    return {
        "span": end,
        "idle": idle,
        "alone": dict(alone),
        "tail": end - last_parallel,
        "tail_rules": tail_rules,
    }


#: CPU seconds a job spends starting (interpreter, imports) that the benchmark sampler does
#: not see: about the start-up CPU of the rules' commands (validate/resample ~0.2 s).
STARTUP_CPU_S = 0.3


def _bench_seconds(workdir: Path, dedicated: bool = False) -> dict[str, float]:
    """Job wall per benchmark file (``rule/vol`` or ``rule/kind/level/vol``); with
    ``dedicated``, what the job would take on a CPU of its own instead: its CPU time (the
    sampler's ``cpu_time``) plus :data:`STARTUP_CPU_S`, never more than its wall here."""
    out = {}
    for tsv in (workdir / "benchmarks").rglob("*.tsv"):
        with open(tsv) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        wall = float(row["s"])
        if dedicated:
            cpu = row.get("cpu_time", "")
            if cpu not in ("", "NA"):
                wall = min(wall, float(cpu) + STARTUP_CPU_S)
        out[tsv.relative_to(workdir / "benchmarks").with_suffix("").as_posix()] = wall
    return out


def project(workdir: Path, cores: int, tail_s: float, longest_first: bool = True) -> float:
    """Wall on ``cores`` cores: list scheduling (longest first) of the measured jobs in the
    DAG's order — per volume fetch -> rename -> validate; the validation report (a
    barrier); resample; drift after its volume's resample — plus the measured serial tail.
    Snakemake does not know how long a job takes: ``longest_first=False`` takes the ready
    drift jobs shortest first instead, the worst order for the longest one."""
    seconds = _bench_seconds(workdir)
    per_volume: dict[str, float] = defaultdict(float)
    resample: dict[str, float] = {}
    drift: dict[str, list[float]] = defaultdict(list)
    for job, s in seconds.items():
        parts = job.split("/")
        if parts[0] in ("fetch", "rename", "validate"):
            per_volume[parts[-1]] += s
        elif parts[0] == "resample":
            resample[parts[-1]] = s
        elif parts[0] == "drift":
            drift[parts[-1]].append(s)
    # phase 1: independent chains
    free = [0.0] * cores
    for s in sorted(per_volume.values(), reverse=True):
        i = free.index(min(free))
        free[i] += s
    barrier = max(free)
    free = [barrier] * cores
    ready: list[tuple[float, float]] = []  # (earliest start, seconds)
    for vol, s in sorted(resample.items(), key=lambda kv: -kv[1] - sum(drift.get(kv[0], []))):
        i = free.index(min(free))
        free[i] += s
        ready += [(free[i], d) for d in drift.get(vol, [])]
    if longest_first:  # earliest, then longest first
        return max(_schedule(ready, cores, free)) + tail_s
    for earliest, s in sorted(ready):  # earliest, then shortest first
        i = free.index(min(free))
        free[i] = max(free[i], earliest) + s
    return max(free) + tail_s


def slurm_projection(workdir: Path, tail_s: float, queue_s: float) -> float:
    """Unlimited nodes, one SLURM job per heavy rule (fetch/rename/validate/resample/drift),
    ``queue_s`` of queueing and start-up per job: the longest chain of the DAG."""
    seconds = _bench_seconds(workdir)
    chain: dict[str, float] = defaultdict(float)
    drift_max: dict[str, float] = defaultdict(float)
    for job, s in seconds.items():
        parts = job.split("/")
        if parts[0] in ("fetch", "rename", "validate"):
            chain[parts[-1]] += s + queue_s
        elif parts[0] == "drift":
            drift_max[parts[-1]] = max(drift_max[parts[-1]], s + queue_s)
    phase1 = max(chain.values(), default=0.0)
    phase2 = max(
        (s + queue_s + drift_max.get(j.split("/")[-1], 0.0))
        for j, s in seconds.items()
        if j.startswith("resample/")
    )
    return phase1 + phase2 + tail_s


#: Jobs after the per-volume work that SLURM runs: bundle -> verify_bundle and report_figures
#: as one submission (group resources.GROUP_TAIL), report_mips alone (beside the drift jobs).
TAIL_SUBMITTED = ("report_mips", "report_figures", "bundle", "verify_bundle")
#: profiles/slurm's ``local-cores``: the submit host's CPUs for the localrules (fetch,
#: rename, validate and the small merges).
LOCAL_CORES = 2


def _schedule(
    tasks: list[tuple[float, float]], cores: int, free: list[float] | None = None
) -> list[float]:
    """List scheduling of ``(earliest start, seconds)`` tasks (earliest, then longest
    first) on ``cores`` cores that are free from ``free`` on (0): when each core is free."""
    free = list(free) if free is not None else [0.0] * max(1, cores)
    for earliest, s in sorted(tasks, key=lambda t: (t[0], -t[1])):
        i = free.index(min(free))
        free[i] = max(free[i], earliest) + s
    return free


def slurm_submissions(volumes: list[str], valid: list[str]) -> dict[str, list[str]]:
    """What profiles/slurm submits for a release: the process groups
    (resources.submission_group) of the valid volumes, the tail group, report_mips alone
    (fetch, rename and validate are localrules: no submission)."""
    from minivess_bundle import resources

    process = [resources.submission_group(resources.GROUP_PROCESS, v, volumes) for v in valid]
    return {
        "process": sorted(set(process)),
        "tail": [resources.GROUP_TAIL, "report_mips"],
    }


def slurm_grouped_projection(
    workdir: Path,
    volumes: list[str],
    valid: list[str],
    queue_s: float,
    cores: int = 0,
    before: bool = False,
    dedicated: bool = False,
) -> dict[str, float]:
    """Unlimited nodes, profiles/slurm's submissions (:func:`slurm_submissions`), each
    waiting ``queue_s`` and running its jobs on ``cores`` CPUs (default the profile's
    resources.GROUP_CORES; list scheduling of the measured jobs): fetch -> rename -> validate
    of every volume on the submit host (LOCAL_CORES, no queue), the validation checkpoint,
    the process submissions (a volume's drift jobs after its resample), then the tail
    submission (bundle and report_figures side by side, verify_bundle after the bundle);
    report_mips is submitted when the last resample is done. ``before``: the design this
    replaced, for comparison (fetch -> rename -> validate of two volumes submitted, 2 CPUs
    per submission, every tail job its own submission: four queue waits in a row).
    ``dedicated``: each job takes its CPU time plus start-up (:func:`_bench_seconds`), as
    on a node's CPU of its own, not its wall on this (shared) machine."""
    from minivess_bundle import resources

    seconds = _bench_seconds(workdir, dedicated)
    chain: dict[str, float] = defaultdict(float)
    resample: dict[str, float] = {}
    drift: dict[str, list[float]] = defaultdict(list)
    tail: dict[str, float] = {}
    for job, s in seconds.items():
        parts = job.split("/")
        if parts[0] in ("fetch", "rename", "validate"):
            chain[parts[-1]] += s
        elif parts[0] == "resample":
            resample[parts[-1]] = s
        elif parts[0] == "drift":
            drift[parts[-1]].append(s)
        elif parts[0] in TAIL_SUBMITTED:
            tail[parts[0]] = s
    cores = cores or (2 if before else resources.GROUP_CORES)
    q = queue_s
    members: dict[str, list[str]] = defaultdict(list)
    if before:  # two volumes' fetch -> rename -> validate per submission
        for vol in volumes:
            members[resources.submission_group("prepare", vol, volumes)].append(vol)
        phase1 = max(
            q + max(_schedule([(0.0, chain.get(v, 0.0)) for v in vols], cores))
            for vols in members.values()
        )
    else:  # localrules on the submit host
        phase1 = max(_schedule([(0.0, chain.get(v, 0.0)) for v in volumes], LOCAL_CORES))
    members = defaultdict(list)
    for vol in valid:
        members[resources.submission_group(resources.GROUP_PROCESS, vol, volumes)].append(vol)

    def process_time(vols: list[str]) -> tuple[float, float]:
        """(when the group's last resample ends, when its last job ends)"""
        free, ready = [0.0] * cores, []
        for vol in sorted(vols, key=lambda v: -resample.get(v, 0.0)):
            i = free.index(min(free))
            free[i] += resample.get(vol, 0.0)
            ready += [(free[i], d) for d in drift.get(vol, [])]
        return max(free), max(_schedule(ready, cores, free))

    times = [process_time(vols) for vols in members.values()]
    phase2 = q + max(end for _, end in times)
    resampled = q + max(r for r, _ in times)
    bundle, verify = tail.get("bundle", 0.0), tail.get("verify_bundle", 0.0)
    figures, mips = tail.get("report_figures", 0.0), tail.get("report_mips", 0.0)
    if before:
        tail_s = max(q + mips, q + figures, q + bundle + q + verify)
        mips_end = 0.0  # counted in the tail
    else:
        # one submission: bundle (2 threads) beside report_figures when cores allow
        tail_s = q + (max(bundle + verify, figures) if cores >= 3 else bundle + verify + figures)
        mips_end = phase1 + resampled + q + mips
    total = max(phase1 + phase2 + tail_s, mips_end)
    return {
        "prepare": phase1,
        "process": phase2,
        "tail_submitted": tail_s,
        "total": total,
        "queued_in_a_row": 4 if before else 2,
    }


def print_slurm(
    wd: Path, volumes: list[str], valid: list[str], tail_s: float, rules: dict[str, dict]
) -> None:
    """The SLURM figures of a measured build: submissions and projections."""
    from minivess_bundle import resources

    subs = slurm_submissions(volumes, valid)
    n_subs = sum(len(v) for v in subs.values())
    per_rule_jobs = sum(  # rename and drift_select were localrules
        r["jobs"] for name, r in rules.items() if name in ("fetch", "validate", "resample", "drift")
    ) + len(TAIL_SUBMITTED)
    print(
        f"SLURM submissions (profiles/slurm): {len(subs['process'])} process + "
        f"{len(subs['tail'])} tail (tail group, report_mips) = {n_subs}; fetch/rename/validate "
        f"local  target <= 80  {'met' if n_subs <= 80 else 'MISSED'} (one job per benchmarked "
        f"job before the groups: {per_rule_jobs})"
    )
    for queue in (10, 60):
        grouped = slurm_grouped_projection(wd, volumes, valid, queue)
        before = slurm_grouped_projection(wd, volumes, valid, queue, before=True)
        own = slurm_grouped_projection(wd, volumes, valid, queue, dedicated=True)
        own_before = slurm_grouped_projection(wd, volumes, valid, queue, True, dedicated=True)
        target = f"  target <= 200 s  {'met' if grouped['total'] <= 200 else 'MISSED'}"
        print(
            f"projection, SLURM (unlimited nodes, {queue} s queue + start per submission, "
            f"{resources.GROUP_CORES} CPUs per submission, 2 queued in a row), job walls as "
            f"measured here: {grouped['total']:.0f} s = local prepare {grouped['prepare']:.0f} + "
            f"process {grouped['process']:.0f} + tail submitted {grouped['tail_submitted']:.0f}"
            + (target if queue == 60 else "")
            + f"; at 2 CPUs per submission "
            f"{slurm_grouped_projection(wd, volumes, valid, queue, 2)['total']:.0f} s; "
            f"the design before (prepare submitted, 2 CPUs, tail jobs apart: 4 in a row) "
            f"{before['total']:.0f} s; one job per rule, tail local: "
            f"{slurm_projection(wd, tail_s, queue):.0f} s"
        )
        print(
            f"  each job on a CPU of its own (its CPU time + {STARTUP_CPU_S} s start-up): "
            f"{own['total']:.0f} s = local prepare {own['prepare']:.0f} + process "
            f"{own['process']:.0f} + tail submitted {own['tail_submitted']:.0f}; the design "
            f"before {own_before['total']:.0f} s"
        )
    seconds = _bench_seconds(wd)
    longest = max((s, j) for j, s in seconds.items() if j.startswith("drift/"))
    print(f"  longest job of the process stage: {longest[1]} {longest[0]:.0f} s wall here, "
          f"{_bench_seconds(wd, True)[longest[1]]:.0f} s on a CPU of its own")  # fmt: skip


def footprint(workdir: Path) -> dict[str, int]:
    """results/ on disk (each inode once, allocated blocks) and the bag's payload bytes."""
    import yaml

    from minivess_bundle.core import layout

    seen, results = set(), 0
    for path in (workdir / layout.RESULTS).rglob("*"):
        st = path.lstat()
        if path.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            results += st.st_blocks * 512
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    bag = workdir / layout.bundle_files(config["bundle"]["version"])["bag"]
    payload = sum(p.stat().st_size for p in (bag / "data").rglob("*") if p.is_file())
    return {"results": results, "payload": payload}


# --------------------------------------------------------------------------- floors


def _decode(path: str) -> int:
    from minivess_bundle.core.nifti import gunzip_bytes

    with open(path, "rb") as handle:
        return len(gunzip_bytes(handle.read()))


def _encode(path: str) -> int:
    from minivess_bundle.core.nifti import gzip_bytes

    with open(path, "rb") as handle:
        return len(gzip_bytes(handle.read(), CODEC, LEVEL))


def _pool_timed(fn, items: list, procs: int) -> dict:
    """Run ``fn`` over ``items`` on ``procs`` processes: wall and the pool's CPU."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with ProcessPoolExecutor(procs) as pool:
        results = list(pool.map(fn, items, chunksize=1))
    wall = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {"wall": wall, "cpu": cpu, "results": results}


def physical_floor(workdir: Path, scratch: Path, procs: int) -> dict:
    """Decode every input once and encode every output once (isal), on ``procs`` processes.

    Inputs: the staged images and labels. Outputs: every distinct .nii.gz the build made
    (processed and drift variants, each file once: the bag's and tar's copies are bytes,
    not codec work), decompressed untimed into ``scratch`` first."""
    from minivess_bundle.core import layout
    from minivess_bundle.core.nifti import gunzip_bytes

    inputs = sorted(str(p) for p in (workdir / layout.RENAMED_ROOT).rglob("*.nii.gz"))
    digests, raw_outputs = set(), []
    scratch.mkdir(parents=True, exist_ok=True)
    for root in (layout.PROCESSED_ROOT, layout.DRIFT_ROOT):
        for path in sorted((workdir / root).rglob("*.nii.gz")):
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest in digests:  # an untouched copy of a processed file
                continue
            digests.add(digest)
            target = scratch / f"{len(raw_outputs):05d}.nii"
            target.write_bytes(gunzip_bytes(data))
            raw_outputs.append(str(target))
    raw_outputs.sort(key=lambda p: -os.path.getsize(p))
    inputs.sort(key=lambda p: -os.path.getsize(p))
    decode = _pool_timed(_decode, inputs, procs)
    encode = _pool_timed(_encode, raw_outputs, procs)
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "wall": decode["wall"] + encode["wall"],
        "cpu": decode["cpu"] + encode["cpu"],
        "inputs": len(inputs),
        "outputs": len(raw_outputs),
        "decoded_bytes": sum(decode["results"]),
        "encoded_bytes": sum(encode["results"]),
    }


def _hashes(rel: str, data: bytes) -> tuple[str, int, str, str]:
    return rel, len(data), hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest()


def _write(bag: Path, rel: str, data: bytes) -> tuple[str, int, str, str]:
    path = bag / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return _hashes(rel, data)


def _volume_task(args: tuple) -> list:
    """One volume: read its three files, validate arithmetic, resample, encode, write, hash."""
    import types

    import nibabel as nib
    import numpy as np

    from minivess_bundle.core.nifti import gunzip_bytes, gzip_bytes
    from minivess_bundle.core.volumes import staging_names
    from minivess_bundle.resample import output_affine_mm, output_grid, resample_slab
    from minivess_bundle.resample.grid import _output_header
    from minivess_bundle.resample.kernels import _to_uint16
    from minivess_bundle.validate import intensity_stats, label_values

    release, bag, volume = args
    names = staging_names(volume)
    raw = {k: (release / rel).read_bytes() for k, rel in names.items()}
    out = [
        _write(bag, f"data/raw/imagesTr/{volume}.nii.gz", raw["image"]),
        _write(bag, f"data/raw/labelsTr/{volume}.nii.gz", raw["label"]),
        _write(bag, f"data/raw/metadata/{volume}.json", raw["metadata"]),
        _write(bag, f"data/processed/metadata/{volume}.json", raw["metadata"]),
    ]
    img = nib.Nifti1Image.from_bytes(gunzip_bytes(raw["image"]))
    lbl = nib.Nifti1Image.from_bytes(gunzip_bytes(raw["label"]))
    image, label = np.asanyarray(img.dataobj), np.asanyarray(lbl.dataobj)
    report = {
        "stats": intensity_stats(image),
        "values": label_values(label),
        "fg": float(np.count_nonzero(label)) / label.size,
        "json": json.loads(raw["metadata"]),
    }
    affine_um = np.array(img.header.get_best_affine(), dtype=float)
    spacing = [float(v) for v in np.linalg.norm(affine_um[:3, :3], axis=0)]
    grid = output_grid(image.shape, spacing, TARGET_UM)
    affine_mm = output_affine_mm(affine_um, spacing, grid)
    nz_in, nz = image.shape[2], grid["shape"][2]
    for role, array, interp, dtype, src in (
        ("image", image, "linear", "<u2", img),
        ("label", label, "nearest", "u1", lbl),
    ):
        zyx = resample_slab(array.T, spacing, grid, 0, nz, 0, nz_in, interp, role == "image", 1)
        zyx = _to_uint16(zyx)[0] if role == "image" else zyx.astype("u1", copy=False)
        head = _output_header(
            types.SimpleNamespace(header=src.header), grid["shape"], affine_mm, dtype
        )
        body = gzip_bytes(head + np.ascontiguousarray(zyx).tobytes(), CODEC, LEVEL)
        sub = "imagesTr" if role == "image" else "labelsTr"
        out.append(_write(bag, f"data/processed/{sub}/{volume}.nii.gz", body))
    return [out, {volume: json.dumps(report, default=str)}]


def _drift_task(args: tuple) -> list:
    """One drift volume and kind: every level's variant, made by the workflow's drift job
    function (:func:`drift_variants`), written and hashed."""
    bag, volume, kind, jobs = args
    image, label = (
        bag / f"data/processed/{sub}/{volume}.nii.gz" for sub in ("imagesTr", "labelsTr")
    )
    scratch = bag.parent / f"drift-scratch-{volume}-{kind}"
    made = drift_variants(image, label, jobs, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    return [[_write(bag, rel, data) for rel, data in made.items()], {}]


def same_work_floor(release: Path, volumes: list[str], out: Path, procs: int) -> dict:
    """The bench's floor over ``procs`` processes (see the module docstring)."""
    from minivess_bundle.core.volumes import EBRAINS_LICENCE

    shutil.rmtree(out, ignore_errors=True)
    bag = out / "bag"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ru_self0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    licence = (release / EBRAINS_LICENCE).read_bytes()
    rows = [_write(bag, f"data/raw/metadata/{EBRAINS_LICENCE}", licence)]
    reports: dict = {}
    by_size = sorted(volumes, key=lambda v: -(release / "raw" / f"{v}.nii.gz").stat().st_size)
    groups = plan_groups(volumes, default_drift_config())
    with ProcessPoolExecutor(procs) as pool:
        futures = {v: pool.submit(_volume_task, (release, bag, v)) for v in by_size}
        drift_futures = []
        for group in groups:
            futures[group.volume].result()  # its processed pair must exist first
            task = (bag, group.volume, group.kind, group.jobs())
            drift_futures.append(pool.submit(_drift_task, task))
        for future in list(futures.values()) + drift_futures:
            written, report = future.result()
            rows += written
            reports.update(report)
    rows.append(_write(bag, "data/validation_report.json", json.dumps(reports).encode()))
    rows.sort()
    for algo, column in (("sha256", 2), ("sha512", 3)):
        lines = "".join(f"{row[column]}  {row[0]}\n" for row in rows)
        (bag / f"manifest-{algo}.txt").write_text(lines)
    with tarfile.open(out / "bag.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(bag.rglob("*")):
            if path.is_file():
                info = tar.gettarinfo(str(path), path.relative_to(out).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = 1677628800, 0, 0, "", ""
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
    wall = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ru_self1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = sum(
        (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
        for a, b in ((ru0, ru1), (ru_self0, ru_self1))
    )
    written = sum(row[1] for row in rows)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall": wall,
        "cpu": cpu,
        "files": len(rows),
        "payload": written,
        "drift_jobs": sum(len(group.levels) for group in groups),
    }


# --------------------------------------------------------------------------- start-up, codec


def startup_real(scratch: Path, cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Best of 5 wall of the CLI subcommands the per-volume rules call, on a 32^3 pair
    (and, into ``cpu`` when given, the best of 5 CPU: user + sys, load-proof)."""
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    scratch.mkdir(parents=True, exist_ok=True)
    staged = write_synthetic_volume(scratch / "staging", "mv05", SEED, size_xy=32, max_z=32)
    cli = str(Path(sys.executable).parent / "minivess-bundle")
    # the workflow's specs: 32^3 synthetic, 1 um isotropic with no voxel limit
    config = validated(
        {
            "seed": SEED,
            "synthetic": {"size_xy": 32, "max_z": 32},
            "compression": {"codec": CODEC, "level": LEVEL},
        }
    )
    config["resample"]["max_output_voxels"] = 0
    resample_spec = spec_json(ResampleSpec.from_config(config))
    o = scratch
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "minivess-bundle --version": [cli, "--version"],
        "validate (32^3 pair)": [cli, "validate", "mv05", "--image", staged["image"], "--label",
                                 staged["label"], "--metadata", staged["metadata"], "--spec",
                                 spec_json(ValidateSpec.from_config(config)),
                                 "--out", str(o / "v.json")],
        "resample (32^3 pair)": [cli, "resample", "mv05", "--image", staged["image"], "--label",
                                 staged["label"], "--metadata", staged["metadata"], "--spec",
                                 resample_spec, "--threads", "1", "--out-image",
                                 str(o / "p_i.nii.gz"), "--out-label", str(o / "p_l.nii.gz"),
                                 "--out-metadata", str(o / "p_m.json"),
                                 "--record", str(o / "r.json")],
        "fetch (synthetic 32^3)": [cli, "fetch", "mv05", "--source-path=",
                                   "--spec", spec_json(FetchSpec.from_config(config)),
                                   "--staging", str(o / "staging"),
                                   "--out-image", str(o / "f/imagesTr/mv05.nii.gz"),
                                   "--out-label", str(o / "f/labelsTr/mv05.nii.gz"),
                                   "--out-metadata", str(o / "f/metadata/mv05.json")],
    }  # fmt: skip
    out = {}
    for label, command in commands.items():
        walls, cpus = [], []
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        out[label] = min(walls) if result.returncode == 0 else float("nan")
        if cpu is not None:
            cpu[label] = min(cpus) if result.returncode == 0 else float("nan")
        if result.returncode != 0:
            print(f"  (start-up: {label} failed: {result.stderr.strip()[-300:]})")
    return out


def codec_times(workdir: Path, max_raw: int = 300_000_000) -> dict:
    """isal level 2 vs zlib level 6 on the processed files (the first ``max_raw`` bytes' worth,
    in name order; zlib 6 runs at ~6 MB/s): bytes and seconds, one process."""
    from minivess_bundle.core.layout import PROCESSED_ROOT
    from minivess_bundle.core.nifti import gunzip_bytes, gzip_bytes

    sizes = {"raw": 0, "isal2": 0, "zlib6": 0, "isal2_s": 0.0, "zlib6_s": 0.0}
    for path in sorted((workdir / PROCESSED_ROOT).rglob("*.nii.gz")):
        if sizes["raw"] >= max_raw:
            break
        data = gunzip_bytes(path.read_bytes())
        sizes["raw"] += len(data)
        for key, codec, level in (("isal2", "isal", 2), ("zlib6", "zlib", 6)):
            start = time.perf_counter()
            sizes[key] += len(gzip_bytes(data, codec, level))
            sizes[f"{key}_s"] += time.perf_counter() - start
    return sizes


# --------------------------------------------------------------------------- main


def main(volumes_n: int | None, size: int, cores: int, keep: Path | None) -> None:
    from minivess_bundle.core.volumes import ALL_VOLUMES

    volumes = list(ALL_VOLUMES[:volumes_n] if volumes_n else ALL_VOLUMES)
    work = keep or Path(tempfile.mkdtemp(prefix="bench-release-"))
    work.mkdir(parents=True, exist_ok=True)
    release = work / f"release-{size}"
    print(
        f"work: {work}; {len(volumes)} volumes at {size} px, {cores} cores; load {os.getloadavg()}"
    )
    staged = stage_release(release, volumes, size, cores)
    print(
        "staging (synthetic generation, not pipeline cost): "
        + (f"{staged:.1f} s on {cores} processes" if staged is not None else "reused")
    )
    wd = work / "wf"
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir()
    import yaml

    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    make_workdir(  # the repo's bundle defaults (the tests' workdirs switch the tar on)
        wd,
        source="dir",
        dir={"path": str(release)},
        volumes=volumes,
        synthetic={"size_xy": size},
        bundle={"archive": defaults["bundle"]["archive"]},
    )
    wf = run_workflow(wd, cores)
    rules = rule_table(wd)
    jobs = timeline(wd)
    conc = concurrency(jobs)
    foot = footprint(wd)
    phys = physical_floor(wd, work / "phys-scratch", cores)
    same = same_work_floor(release, volumes, work / "floor", cores)
    start_cpu: dict[str, float] = {}
    starts = startup_real(work / "startup", start_cpu)
    codec = codec_times(wd)
    in_bytes = sum(p.stat().st_size for p in release.rglob("*") if p.is_file())

    print(f"\nload after: {os.getloadavg()}")
    print(f"input: {len(volumes)} volumes, {in_bytes / 1e9:.3f} GB compressed")
    print(f"{'':22} {'wall s':>8} {'CPU s':>8}")
    for name, r in (("workflow", wf), ("same-work floor", same), ("physical floor", phys)):
        print(f"{name:22} {r['wall']:8.1f} {r['cpu']:8.1f}")
    for name, r, target in (("same-work", same, 1.5), ("physical", phys, 5.0)):
        ratio, cpu_ratio = wf["wall"] / r["wall"], wf["cpu"] / r["cpu"]
        print(
            f"workflow / {name} floor: wall {ratio:.2f}x, CPU {cpu_ratio:.2f}x  "
            f"target <= {target}x: wall {'met' if ratio <= target else 'MISSED'}, "
            f"CPU {'met' if cpu_ratio <= target else 'MISSED'}"
        )
    steps = sum(r["jobs"] for r in rules.values())
    own, jobs_cpu = wf["snakemake_cpu"], wf["cpu"] - wf["snakemake_cpu"]
    print(
        f"workflow CPU {wf['cpu']:.1f} s = snakemake's own process {own:.1f} s + the jobs' "
        f"processes {jobs_cpu:.1f} s ({steps} benchmarked jobs; the benchmark tsv's sampler sees "
        f"{sum(r['cpu'] for r in rules.values()):.1f} s of it)"
    )
    tail_share = conc["tail"] / wf["wall"]
    print(
        f"serial tail (after the last per-volume job): {conc['tail']:.0f} s = "
        f"{100 * tail_share:.1f} % of wall ({', '.join(conc['tail_rules'])})  target <= 15 %  "
        f"{'met' if tail_share <= 0.15 else 'MISSED'}"
    )
    io = wf["io"]
    print(
        f"workflow I/O (process tree): read {io['rchar'] / 1e9:.2f} GB (storage "
        f"{io['read_bytes'] / 1e9:.2f} GB), written {io['wchar'] / 1e9:.2f} GB (storage "
        f"{io['write_bytes'] / 1e9:.2f} GB)"
    )
    print(
        f"results/ {foot['results'] / 1e9:.2f} GB on disk vs bag payload "
        f"{foot['payload'] / 1e9:.2f} GB: {foot['results'] / foot['payload']:.2f}x  "
        f"target <= 2x  {'met' if foot['results'] <= 2 * foot['payload'] else 'MISSED'}"
    )
    print("\nper rule (benchmark tsv): jobs, summed wall s, summed CPU s, CPU s per job, max job "
          "s, max RSS MB, MB in, MB out")  # fmt: skip
    for rule, r in sorted(rules.items(), key=lambda kv: -kv[1]["s"]):
        print(
            f"  {rule:14} {r['jobs']:4d} {r['s']:8.1f} {r['cpu']:8.1f} "
            f"{r['cpu'] / max(r['jobs'], 1):6.2f} {r['max_s']:7.1f} "
            f"{r['rss']:7.0f} {r['in']:8.0f} {r['out']:8.0f}"
        )
    total_job = sum(r["s"] for r in rules.values())
    print(f"  summed job wall {total_job:.1f} s over {sum(r['jobs'] for r in rules.values())} jobs")
    print(
        f"timeline (snakemake log, 1 s resolution): span {conc['span']:.0f} s, nothing running "
        f"{conc['idle']:.0f} s; ran alone: "
        + ", ".join(
            f"{k} {v:.0f} s" for k, v in sorted(conc["alone"].items(), key=lambda kv: -kv[1])
        )
    )
    for k in (cores, 8):
        print(f"projection, {k} cores (list scheduling of the measured jobs + tail): "
              f"{project(wd, k, conc['tail']):.0f} s with the longest ready job first, "
              f"{project(wd, k, conc['tail'], False):.0f} s shortest first"
              + ("  target <= 70 s  " + ("met" if project(wd, k, conc["tail"]) <= 70
                                         else "MISSED") if k == 8 else ""))  # fmt: skip
    valid = json.loads((wd / "results" / "validation_report.json").read_text())["valid"]
    print_slurm(wd, volumes, valid, conc["tail"], rules)
    print(
        f"physical floor: decoded {phys['inputs']} inputs ({phys['decoded_bytes'] / 1e9:.2f} GB), "
        f"encoded {phys['outputs']} outputs ({phys['encoded_bytes'] / 1e9:.2f} GB)"
    )
    print(
        f"same-work floor: {same['files']} payload files, {same['payload'] / 1e9:.2f} GB, "
        f"{same['drift_jobs']} drift variants"
    )
    base = starts["python -c pass"]
    for label, value in starts.items():
        print(f"start-up {label:28} best of 5 {value:.3f} s (+{value - base:.3f} s), CPU "
              f"{start_cpu[label]:.3f} s  target <= 0.3 s  "
              f"{'met' if value <= 0.3 else 'MISSED'}")  # fmt: skip
    speed = codec["zlib6_s"] / codec["isal2_s"]
    print(
        f"codec on the processed images ({codec['raw'] / 1e9:.2f} GB raw): isal 2 "
        f"{codec['isal2'] / 1e6:.1f} MB in {codec['isal2_s']:.2f} s, zlib 6 "
        f"{codec['zlib6'] / 1e6:.1f} MB in {codec['zlib6_s']:.2f} s: isal is {speed:.0f}x "
        f"faster, {100 * (codec['isal2'] / codec['zlib6'] - 1):+.1f} % size"
    )
    if not keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # python bench/release.py --project KEEP: a kept run's figures
    import argparse

    parser = argparse.ArgumentParser(description="SLURM figures of a kept --release run")
    parser.add_argument("--project", type=Path, required=True, help="the run's --keep folder")
    wd = parser.parse_args().project / "wf"
    report = json.loads((wd / "results" / "validation_report.json").read_text())
    volumes = list(report["volumes"])
    print_slurm(wd, volumes, report["valid"], concurrency(timeline(wd))["tail"], rule_table(wd))
