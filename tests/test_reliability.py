"""Interrupted, concurrent and starved runs: nothing partial at a final path, reruns complete
identically; a source folder is only read; a token never leaves the process that uses it."""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import tree_digest, unavailable
from fake_dataproxy import FakeDataProxy, write_release
from workflow_utils import (
    SNAKEMAKE_TIMEOUT_S,
    make_workdir,
    pinned_git_commit,
    release_tree,
    run_snakemake,
    snakemake_command,
    start_snakemake,
    wait_for,
)

pytestmark = pytest.mark.workflow
SMALL = {
    "synthetic": {"size_xy": 64, "max_z": 20},
    "volumes": ["mv01", "mv02", "mv03", "mv04", "mv05", "mv06"],
    "resample": {"target_spacing_um": "native"},
    "drift": {"types": ["intensity", "topology"], "levels": [1]},
}
ARCHIVE = "results/bundle/minivess-0.1.0.tar"


def final_files(results: Path) -> list[Path]:
    """Files at final paths: neither hidden nor inside a hidden (temporary) folder."""
    if not results.is_dir():
        return []
    return [
        path
        for path in sorted(results.rglob("*"))
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(results).parts)
    ]


def assert_every_final_file_is_whole(results):
    """Every visible file is complete: gzip streams decode to the end (length and CRC
    checked), JSON parses, tar archives read to the end; a bag folder validates."""
    for path in final_files(results):
        if path.name.endswith(".gz"):
            with gzip.open(path) as handle:
                while handle.read(1 << 20):
                    pass
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".tar":
            with tarfile.open(path, "r:") as archive:
                for member in archive:
                    if member.isfile():
                        archive.extractfile(member).read()
    bag = results / "bundle" / "minivess-0.1.0"
    # Snakemake makes the (empty) folder of the bag's declared outputs before the job
    # starts; the bag itself is renamed into place only when complete, so must validate.
    if bag.is_dir() and any(bag.iterdir()):
        import bagit

        bagit.Bag(str(bag)).validate()


@pytest.fixture(scope="module", autouse=True)
def one_commit():
    """Every build here records the same commit in its provenance, even if HEAD moves while
    the module runs (someone commits), so archives stay comparable byte for byte."""
    with pinned_git_commit():
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("reference"), **SMALL)
    run_snakemake(workdir, "--cores", "2", "all")
    return (workdir / ARCHIVE).read_bytes()


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_bytes(reference, tmp_path):
    workdir = make_workdir(tmp_path / "killed", **SMALL)
    run = start_snakemake(workdir, "--cores", "2", "all")
    landed = workdir / "results" / "renamed" / "imagesTr"
    wait_for(lambda: landed.is_dir() and len(list(landed.glob("mv*.nii.gz"))) >= 2, run)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    assert not (workdir / "results" / "renamed_inventory.json").exists()  # really mid-run
    assert_every_final_file_is_whole(workdir / "results")
    # A plain rerun says what Snakemake needs: --unlock (a lock left by the kill) and/or
    # --rerun-incomplete (jobs that were running); the README documents both.
    refused = run_snakemake(workdir, "--cores", "2", "all", check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and ("--unlock" in said or "--rerun-incomplete" in said)
    run_snakemake(workdir, "--unlock")
    rerun = run_snakemake(workdir, "--cores", "2", "all", "--rerun-incomplete")
    assert "Nothing to be done" not in rerun.stdout + rerun.stderr
    assert (workdir / ARCHIVE).read_bytes() == reference


def test_second_instance_in_the_same_directory_is_refused(tmp_path):
    workdir = make_workdir(tmp_path / "locked", **SMALL)
    first = start_snakemake(workdir, "--cores", "1", "all")
    try:
        locks = workdir / ".snakemake" / "locks"
        wait_for(lambda: locks.is_dir() and any(locks.iterdir()), first)
        # Hold the first run where it is (lock taken, build unfinished): on an idle machine
        # the small build would otherwise finish before the second instance starts.
        os.killpg(first.pid, signal.SIGSTOP)
        # A plain second run is refused (by the lock, or earlier by the files the first is
        # writing); even one told to --rerun-incomplete those files meets the lock.
        plain = run_snakemake(workdir, "--cores", "1", "all", check=False)
        said = plain.stdout + plain.stderr
        assert plain.returncode != 0
        assert "Directory cannot be locked" in said or "IncompleteFilesException" in said
        forced = run_snakemake(workdir, "--cores", "1", "all", "--rerun-incomplete", check=False)
        assert forced.returncode != 0
        assert "Directory cannot be locked" in forced.stdout + forced.stderr
        assert first.poll() is None  # the first run was not disturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert_every_final_file_is_whole(workdir / "results")


# --- SIGKILL timed inside a stage -------------------------------------------------------------


def _group(pgid: int) -> list[str]:
    """The states (R, S, D, T, Z, ...) of the live processes in process group ``pgid``."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def freeze(pgid: int, deadline: float) -> None:
    """SIGSTOP process group ``pgid`` and return once every process in it is stopped.

    SIGSTOP is sent again on every look: a process forked while the group was being stopped
    (a job starting) may have escaped the first one. Load-proof: no fixed wait, only
    ``deadline`` (that of the whole run) bounds a hang.

    A parent stopped in the middle of ``vfork`` (``posix_spawn``: snakemake starting a job)
    waits, uninterruptibly (state D), for its child to exec; if the SIGSTOP caught the child
    first, the parent can never stop. So after every 50 looks the group runs on for a moment
    (SIGCONT) and the stop starts again: the child execs and both stop."""
    looks = 0
    while True:
        os.killpg(pgid, signal.SIGSTOP)
        if all(s in "TtZX" for s in _group(pgid)):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process group {pgid} did not stop: {_group(pgid)}")
        looks += 1
        if looks % 50 == 0:
            os.killpg(pgid, signal.SIGCONT)
        time.sleep(0.001)


def kill_inside(
    run, started, inside, step_s: float = 0.003, timeout_s: float = SNAKEMAKE_TIMEOUT_S
) -> None:
    """SIGKILL snakemake's process group at a moment when ``inside()`` holds.

    The run goes freely until ``started()``; from then on it advances in short steps
    (SIGCONT, ``step_s``, SIGSTOP) and ``inside()`` is checked while every process of the
    group is stopped, so nothing changes between the check and the kill: even a temporary
    file that lives for a few milliseconds is caught. Fails if the run ends first; the
    deadline only bounds a hang (a busy machine just makes the steps slower)."""
    deadline = time.monotonic() + timeout_s
    stepping = False
    try:
        while run.poll() is None and time.monotonic() < deadline:
            stepping = stepping or started()
            if stepping:
                freeze(run.pid, deadline)
                if inside():
                    return
                os.killpg(run.pid, signal.SIGCONT)
            time.sleep(step_s if stepping else 0.02)
        raise AssertionError(f"the moment to kill never came (snakemake exit {run.poll()})")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def start_logged(workdir: Path, log: Path, *args: str, env: dict | None = None):
    """Start snakemake in its own process group, its output going to ``log`` (a pipe nobody
    reads would fill up and stall it)."""
    command, base = snakemake_command(workdir, *args)
    with open(log, "w") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, **(env or {})},
            start_new_session=True,
        )


EBRAINS_VOLUMES = ["mv01", "mv02", "mv03"]
TOKEN = f"tok-{secrets.token_hex(16)}"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A tiny release in the EBRAINS layout (synthetic volumes, a licence stand-in)."""
    return write_release(tmp_path_factory.mktemp("release"), EBRAINS_VOLUMES, 64, 12)


@pytest.fixture(scope="module")
def proxy(release):
    """One fake data-proxy for the module: its address is in the config, and so in the
    bundle's provenance, so builds compared byte for byte must use the same one."""
    with FakeDataProxy(release) as server:
        yield server


def web_config(proxy) -> dict:
    return {
        "source": "ebrains",
        "volumes": EBRAINS_VOLUMES,
        "ebrains": {"api_base": proxy.api_base},
        "resample": {"target_spacing_um": "native"},
        "drift": {"enabled": False},
    }


@pytest.fixture(scope="module")
def web_reference(tmp_path_factory, proxy):
    """An uninterrupted ebrains build with a token configured (EBRAINS_TOKEN): its working
    directory, archive bytes, output and the requests the fake data-proxy saw."""
    workdir = make_workdir(tmp_path_factory.mktemp("web-reference"), **web_config(proxy))
    first = len(proxy.requests)
    command, env = snakemake_command(workdir, "--cores", "2", "all")
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**env, "EBRAINS_TOKEN": TOKEN},
        timeout=SNAKEMAKE_TIMEOUT_S,
    )
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return SimpleNamespace(
        workdir=workdir,
        archive=(workdir / ARCHIVE).read_bytes(),
        output=result.stdout + result.stderr,
        requests=proxy.requests[first:],
    )


def _temporaries(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def _parts(results: Path) -> list[Path]:
    """Partial downloads with bytes on disk."""
    cache = results / "downloads" / "ebrains"
    return [p for p in _temporaries(cache, "**/.*.part") if p.stat().st_size > 0]


def _resample_temps(results: Path) -> list[Path]:
    return [
        *_temporaries(results / "processed" / "imagesTr", ".mv*.nii.gz.tmp-*"),
        *_temporaries(results / "processed" / "labelsTr", ".mv*.nii.gz.tmp-*"),
    ]


def _bag_temps(results: Path) -> list[Path]:
    return _temporaries(results / "bundle", ".minivess-0.1.0.tmp-*")


# stage: (reference fixture, started, inside) — inside() is checked with the run frozen.
STAGES = {
    "download": (
        "web_reference",
        lambda w: bool(_parts(w / "results")),
        lambda w: bool(_parts(w / "results")),
    ),
    "resample": (
        "reference",
        lambda w: bool(_temporaries(w / "logs" / "resample", "mv[0-9][0-9].log")),
        lambda w: bool(_resample_temps(w / "results")),
    ),
    "bundle": (
        "reference",
        lambda w: (w / "logs" / "bundle" / "bundle.log").exists(),
        lambda w: bool(_bag_temps(w / "results")) and not (w / ARCHIVE).exists(),
    ),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_inside_a_stage_then_rerun_gives_the_uninterrupted_bytes(
    stage, request, proxy, tmp_path
):
    fixture, started, inside = STAGES[stage]
    expected = request.getfixturevalue(fixture)
    expected = expected.archive if stage == "download" else expected
    workdir = make_workdir(
        tmp_path / "killed", **(web_config(proxy) if stage == "download" else SMALL)
    )
    results = workdir / "results"
    proxy.throttle_bps = 32_000 if stage == "download" else None  # downloads last seconds
    try:
        run = start_logged(workdir, tmp_path / "killed.out", "--cores", "2", "all")
        kill_inside(run, lambda: started(workdir), lambda: inside(workdir))
    finally:
        proxy.throttle_bps = None
    assert run.returncode == -signal.SIGKILL
    # Killed inside the stage: its temporary output exists, its final output does not.
    cache = results / "downloads" / "ebrains"
    if stage == "download":  # .mv01.nii.gz.part -> raw/mv01.nii.gz
        parts = {
            p.parent.relative_to(cache) / p.name[1:-5]: p.stat().st_size for p in _parts(results)
        }
        assert parts
        for name in parts:
            assert not (results / "staging" / name).exists()
    elif stage == "resample":
        temps = _resample_temps(results)
        assert temps
        for temp in temps:
            assert not temp.with_name(temp.name[1:].split(".tmp-")[0]).exists()
    else:
        assert _bag_temps(results) and not (workdir / ARCHIVE).exists()
    assert not (workdir / ARCHIVE).exists()
    assert_every_final_file_is_whole(results)

    run_snakemake(workdir, "--unlock")
    seen = len(proxy.requests)
    run_snakemake(workdir, "--cores", "2", "all", "--rerun-incomplete")
    assert (workdir / ARCHIVE).read_bytes() == expected
    # What the killed job left is cleaned up (a partial bag can weigh gigabytes).
    assert _parts(results) == _resample_temps(results) == _bag_temps(results) == []
    assert _temporaries(results / "bundle", ".select-*") == []
    if stage == "download":  # each partial file resumed where the killed job left it
        for name, size in parts.items():
            ranges = [
                r["headers"].get("Range")
                for r in proxy.requests[seen:]
                if r["path"] == f"/store/{name.as_posix()}"
            ]
            whole = (proxy.root / name).stat().st_size == size  # only the rename was missing
            assert ranges == ([] if whole else [f"bytes={size}-"]), (name, ranges)


# --- a full disk ------------------------------------------------------------------------------


def _cannot(reason: str) -> None:
    """Skip where the machine does not allow it; CI runs as root, so there it is a failure."""
    unavailable(f"{reason} (CI must run this test)")


def test_disk_full_names_the_file_keeps_earlier_outputs_and_a_rerun_completes(reference, tmp_path):
    """results/ is a 16 MiB tmpfs, filled by a ballast file but for ~1.2 MB, so the build
    runs out of space part-way; deleting the ballast frees the space (a remount would lose
    the files)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        _cannot("mounting a tmpfs needs root")
    workdir = make_workdir(tmp_path / "full", **SMALL)
    results = workdir / "results"
    results.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(results)]
    if subprocess.run(mount, capture_output=True).returncode:
        _cannot("this machine does not allow mounting a tmpfs")
    try:
        ballast = results / ".ballast"
        free = os.statvfs(results).f_bavail * os.statvfs(results).f_frsize
        ballast.write_bytes(b"\0" * (free - 1_200_000))
        failed = run_snakemake(workdir, "--cores", "2", "all", check=False)
        said = failed.stdout + failed.stderr
        assert failed.returncode != 0 and "No space left on device" in said
        # Each failed job's log ends in one line naming the file it could not write, and
        # Snakemake shows that line; nothing is at that path.
        errors = [
            line
            for log in sorted((workdir / "logs").rglob("*.log"))
            for line in log.read_text().splitlines()
            if line.startswith("error:") or "Traceback" in line
        ]
        assert errors
        for line in errors:
            named = re.fullmatch(r"error: .*No space left on device.* \((results/[^)]+)\)", line)
            assert named, line
            assert line in said
            assert not (workdir / named[1]).exists()
        # Earlier outputs are intact and nothing half-written is left behind.
        assert_every_final_file_is_whole(results)
        assert len(final_files(results / "renamed")) >= 3
        leftovers = [
            p.relative_to(results).as_posix()
            for p in results.rglob(".*")
            if p != ballast and p.name != ".snakemake_timestamp"
        ]
        assert leftovers == []

        ballast.unlink()  # space is freed: the documented plain rerun completes
        run_snakemake(workdir, "--cores", "2", "all")
        assert (workdir / ARCHIVE).read_bytes() == reference
    finally:
        subprocess.run(["umount", str(results)], check=True)


# --- a source folder that is missing or read-only ---------------------------------------------

DIR_VOLUMES = ["mv01", "mv02"]
FAST = {"resample": {"target_spacing_um": "native"}, "drift": {"enabled": False}}


def test_missing_source_folder_fails_with_one_line_naming_it(tmp_path):
    """The config check names the key before any job is planned (no fetch job starts, no
    MissingInputException about a licence file)."""
    missing = tmp_path / "not-there"
    workdir = make_workdir(
        tmp_path / "work", source="dir", dir={"path": str(missing)}, volumes=DIR_VOLUMES, **FAST
    )
    result = run_snakemake(workdir, "--cores", "2", "all", check=False)
    said = result.stdout + result.stderr
    assert result.returncode != 0
    problems = [line for line in said.splitlines() if line.startswith("config: ")]
    assert problems == [f"config: dir.path: no such folder {str(missing)!r} (source: dir)"]
    assert "MissingInputException" not in said and "fetch_licence" not in said
    assert not missing.exists()  # not created by the workflow
    assert not (workdir / "results").exists() or final_files(workdir / "results") == []


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (and root itself): mode, size, mtime, and sha256 of files;
    a file created and removed again would still change its folder's mtime."""
    import hashlib

    entries = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        entries[path.relative_to(root).as_posix()] = (
            info.st_mode,
            info.st_size,
            info.st_mtime_ns,
            digest,
        )
    return entries


def test_read_only_source_folder_is_only_read_and_nothing_is_written_outside(tmp_path):
    """chmod -R a-w (root ignores it for writing, so also a read-only bind mount where
    permitted): the build succeeds, the folder is unchanged to the nanosecond, and nothing
    appears outside the working directory (TMPDIR included)."""
    source = write_release(tmp_path / "release", DIR_VOLUMES, 48, 10)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    workdir = make_workdir(
        tmp_path / "work", source="dir", dir={"path": str(source)}, volumes=DIR_VOLUMES, **FAST
    )
    subprocess.run(["chmod", "-R", "a-w", str(source)], check=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "--bind", str(source), str(source)]).returncode == 0
    )
    try:
        if mounted:
            remount = ["mount", "-o", "remount,bind,ro", str(source), str(source)]
            subprocess.run(remount, check=True)
        before = _snapshot(source)
        command, env = snakemake_command(workdir, "--cores", "2", "all")
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env={**env, "TMPDIR": str(scratch)},
            timeout=SNAKEMAKE_TIMEOUT_S,
        )
        assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        assert _snapshot(source) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["release", "tmp", "work"]
        assert list(scratch.iterdir()) == []
        staging = release_tree(workdir, tmp_path / "arrived")
        for part in ("raw", "seg", "json"):  # the bytes arrived untouched
            assert tree_digest(staging / part) == tree_digest(source / part)
        verdict = (workdir / "results" / "bundle" / "minivess-0.1.0.verified.txt").read_text()
        assert verdict.startswith("OK")
    finally:
        if mounted:
            subprocess.run(["umount", str(source)], check=True)
        subprocess.run(["chmod", "-R", "u+w", str(source)], check=True)


# --- the EBRAINS token ------------------------------------------------------------------------


def _texts(path: Path):
    """The bytes of a file, and of what it holds: gzip streams decompressed, tar members
    (and gzip streams inside them) read out."""
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    if path.suffix == ".tar":
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if member.isfile():
                    inner = archive.extractfile(member).read()
                    yield inner
                    if inner[:2] == b"\x1f\x8b":
                        yield gzip.decompress(inner)


def test_token_is_sent_to_the_api_only_and_written_nowhere(web_reference):
    token = TOKEN.encode()
    api = [r for r in web_reference.requests if r["path"].startswith("/api/")]
    store = [r for r in web_reference.requests if r["path"].startswith("/store/")]
    # The build used the token (every data-proxy request carried it) ...
    assert api and all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in api)
    # ... but the redirect to the object store never did.
    assert store and all("Authorization" not in r["headers"] for r in store)
    assert TOKEN not in web_reference.output
    workdir = web_reference.workdir
    searched = [p for p in sorted(workdir.rglob("*")) if p.is_file() and not p.is_symlink()]
    assert {"logs", ".snakemake", "results"} <= {p.relative_to(workdir).parts[0] for p in searched}
    assert any(p.name == "provenance.json" for p in searched)
    assert (workdir / ARCHIVE) in searched
    leaks = [p for p in searched if any(token in text for text in _texts(p))]
    assert leaks == []
