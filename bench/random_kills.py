"""Random kills: SIGKILL the whole workflow at random moments; every rerun must give the
uninterrupted archive, byte for byte.

Builds a tiny synthetic workflow once without interruption (the reference archive sha256),
then K times: starts the same build in a fresh folder, SIGKILLs snakemake's whole process
group (snakemake and every running job) at a random moment, runs ``snakemake --unlock`` and
``snakemake --rerun-incomplete`` to completion, and compares the archive's sha256 with the
reference. The moment of run i is drawn from ``random.Random(f"{seed}:{i}")``: after
``after_steps`` finished jobs (snakemake's "N of M steps" lines), plus ``delay_ms``. The
seed is printed; a failing run replays exactly with ``--seed S --only I`` (the same draw;
a step count, not a wall-clock time, so a busier machine kills at the same point of the
DAG).

    python bench/random_kills.py --k 10            # a fresh seed, printed
    python bench/random_kills.py --seed 1234 --only 7

Reuses tests/workflow_utils.py (make_workdir, snakemake_command, run_snakemake,
build_digest). Exit status 1 when any rerun differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from workflow_utils import (  # noqa: E402
    build_digest,
    make_workdir,
    run_snakemake,
    snakemake_command,
)

#: Few volumes, small size, two drift types: every stage runs, a build takes seconds.
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv05"],
    "drift": {"types": ["intensity", "topology"], "levels": [1], "volumes": ["mv05"]},
}
#: Snakemake's "N of M steps" and the quiet console's "N of M[+] jobs done" lines.
STEPS = re.compile(r"^(\d+) of (\d+)\+? (?:steps \(|jobs done)", re.M)
MAX_DELAY_MS = 1500


def draw(seed: int, index: int, total_steps: int) -> dict[str, int]:
    """The kill moment of run ``index``: after ``after_steps`` finished jobs + ``delay_ms``."""
    rng = random.Random(f"{seed}:{index}")
    return {"after_steps": rng.randrange(total_steps), "delay_ms": rng.randrange(MAX_DELAY_MS)}


def steps_done(log: Path) -> int:
    found = STEPS.findall(log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1][0]) if found else 0


def killed_run(workdir: Path, moment: dict[str, int], bound_s: float = 600.0) -> dict:
    """Start the build, SIGKILL its process group at ``moment``; what happened."""
    command, env = snakemake_command(workdir, "--cores", "2", "all")
    log = workdir / "killed-run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    start = time.monotonic()
    try:
        while run.poll() is None and steps_done(log) < moment["after_steps"]:
            if time.monotonic() - start > bound_s:
                raise RuntimeError(f"no progress within {bound_s} s (see {log})")
            time.sleep(0.01)
        deadline = time.monotonic() + moment["delay_ms"] / 1000
        while run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        finished_first = run.poll() is not None
        at_s = time.monotonic() - start
        if not finished_first:
            os.killpg(run.pid, signal.SIGKILL)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    return {
        "killed": not finished_first,
        "at_s": round(at_s, 2),
        "steps_done_at_kill": steps_done(log),
        "exit": run.returncode,
    }


def recover(workdir: Path) -> float:
    """The documented recovery: ``--unlock``, then ``--rerun-incomplete``; its wall time."""
    start = time.monotonic()
    run_snakemake(workdir, "--unlock")
    run_snakemake(workdir, "--cores", "2", "all", "--rerun-incomplete")
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=10, help="number of killed runs (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    parser.add_argument("--only", type=int, default=None, help="replay run I of --seed only")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    indices = [args.only] if args.only is not None else list(range(args.k))
    print(f"random kills: seed {seed}, runs {indices}", flush=True)
    # The provenance records the git commit: pin it for the whole bench.
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    os.environ["MINIVESS_GIT_COMMIT"] = head or "no-git"

    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        root = Path(scratch)
        reference = make_workdir(root / "reference", **TINY)
        start = time.monotonic()
        result = run_snakemake(reference, "--cores", "2", "all")
        reference_s = time.monotonic() - start
        total = int(STEPS.findall(result.stdout + result.stderr)[-1][1])
        expected = build_digest(reference)
        print(
            f"reference: {total} jobs in {reference_s:.1f} s, archive sha256 {expected}",
            flush=True,
        )
        rows = []
        for index in indices:
            moment = draw(seed, index, total)
            workdir = make_workdir(root / f"run-{index}", **TINY)
            row = {"run": index, **moment, **killed_run(workdir, moment)}
            row["recover_s"] = round(recover(workdir), 1)
            row["sha256"] = build_digest(workdir)
            row["equal"] = row["sha256"] == expected
            rows.append(row)
            print(
                f"run {index}: kill after {moment['after_steps']}/{total} jobs + "
                f"{moment['delay_ms']} ms -> "
                + (
                    f"SIGKILL at {row['at_s']} s ({row['steps_done_at_kill']} jobs done)"
                    if row["killed"]
                    else "finished before the kill"
                )
                + f"; unlock + rerun {row['recover_s']} s; archive "
                + ("EQUAL" if row["equal"] else f"DIFFERS ({row['sha256']})"),
                flush=True,
            )
    failed = [r["run"] for r in rows if not r["equal"]]
    killed = sum(r["killed"] for r in rows)
    print(
        f"random kills: seed {seed}: {len(rows)} runs, {killed} killed mid-build, "
        + ("all archives equal to the uninterrupted one" if not failed else f"DIFFER: {failed}")
    )
    for index in failed:
        print(f"  replay: python bench/random_kills.py --seed {seed} --only {index}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seed": seed, "jobs": total, "reference_sha256": expected, "runs": rows},
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
