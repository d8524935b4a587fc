"""The authors' DVC fingerprint: the check agrees with `dvc add`, names what differs, and
runs (only) at the end of full real builds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_utils import dvc_env, dvc_exe, run_dvc
from conftest import unavailable
from workflow_utils import make_workdir, run_snakemake

from minivess_bundle.core.volumes import ALL_VOLUMES, EBRAINS_LICENCE
from minivess_bundle.fetch import fingerprint as fp

LICENCE = f"metadata/{EBRAINS_LICENCE}"


def write_tree(root: Path, volumes: list[str]) -> Path:
    """A renamed tree: imagesTr/, labelsTr/, metadata/ of ``volumes``, plus the licence."""
    for i, vol in enumerate(volumes):
        for folder, ext, body in (
            ("imagesTr", "nii.gz", bytes(range(256)) * (i + 3)),
            ("labelsTr", "nii.gz", b"\x00\x01" * (50 + i)),
            ("metadata", "json", json.dumps({"volume": vol, "x_um": 0.994}).encode()),
        ):
            path = root / folder / f"{vol}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    (root / LICENCE).write_bytes(b"%PDF-1.4 licence\n")
    return root


def dvc_fingerprint(tmp_path: Path, tree: Path, volumes: list[str]) -> fp.Fingerprint:
    """What DVC's own `dvc add` records for ``tree`` without the licence (as the authors'
    tree has none): md5, nfiles, size from the `.dvc` file DVC writes."""
    if dvc_exe() is None:
        unavailable("the dvc CLI is not installed (pip install -e '.[test]')")
    repo = tmp_path / "dvc-repo"
    repo.mkdir()
    env = dvc_env(tmp_path)
    run_dvc(repo, env, "init", "--no-scm", "-q")
    copy = repo / "minivess"
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_file() and rel != LICENCE:
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy / rel).write_bytes(path.read_bytes())
    run_dvc(repo, env, "add", "-q", "minivess")
    text = (repo / "minivess.dvc").read_text()
    md5 = re.search(r"md5: (\S+)", text).group(1)
    size = int(re.search(r"size: (\d+)", text).group(1))
    nfiles = int(re.search(r"nfiles: (\d+)", text).group(1))
    names = frozenset(
        f"{folder}/{vol}.{ext}"
        for vol in volumes
        for folder, ext in (("imagesTr", "nii.gz"), ("labelsTr", "nii.gz"), ("metadata", "json"))
    )
    return fp.Fingerprint(md5=md5, nfiles=nfiles, size=size, names=names, source="dvc add")


VOLUMES = ["mv01", "mv02", "mv03"]


@pytest.fixture
def tree_and_dvc(tmp_path):
    tree = write_tree(tmp_path / "renamed", VOLUMES)
    return tree, dvc_fingerprint(tmp_path, tree, VOLUMES)


def test_authors_fingerprint_is_recorded_once_with_their_figures():
    assert fp.AUTHORS.md5 == "be49b3c0c462446c4336cdc5f2781e36.dir"
    assert fp.AUTHORS.nfiles == len(fp.AUTHORS.names) == 210 == 3 * len(ALL_VOLUMES)
    assert fp.AUTHORS.size == 984_532_972
    assert {"imagesTr/mv01.nii.gz", "labelsTr/mv70.nii.gz", "metadata/mv35.json"} <= (
        fp.AUTHORS.names
    )
    assert not any("Licence" in name or "_y" in name for name in fp.AUTHORS.names)


def test_check_equals_dvc_add_on_a_tree_without_the_licence(tree_and_dvc):
    tree, expected = tree_and_dvc
    assert expected.nfiles == 9
    result = fp.check_tree(tree, exclude=[LICENCE], expected=expected)
    assert result.matches and (result.md5, result.nfiles, result.size) == (
        expected.md5,
        expected.nfiles,
        expected.size,
    )
    assert result.missing == result.unexpected == ()
    assert "equals the authors' DVC snapshot" in result.message()
    # the licence is not in the authors' tree: left in, it changes count, bytes and hash
    with_licence = fp.check_tree(tree, expected=expected)
    assert not with_licence.matches and with_licence.unexpected == (LICENCE,)
    assert with_licence.nfiles == 10 and with_licence.size == expected.size + 17


def test_one_changed_byte_is_a_difference_with_the_same_count_bytes_and_names(tree_and_dvc):
    tree, expected = tree_and_dvc
    image = tree / "imagesTr" / "mv02.nii.gz"
    body = bytearray(image.read_bytes())
    body[100] ^= 1
    image.write_bytes(bytes(body))
    result = fp.check_tree(tree, exclude=[LICENCE], expected=expected)
    assert not result.matches and result.md5 != expected.md5
    assert (result.nfiles, result.size) == (expected.nfiles, expected.size)
    message = result.message()
    assert "same file count (9)" in message and f"same byte total ({expected.size:,})" in message
    assert "some file's contents differ" in message and "missing" not in message


def test_missing_and_unexpected_files_are_named_with_count_and_bytes(tree_and_dvc):
    tree, expected = tree_and_dvc
    gone = tree / "labelsTr" / "mv03.nii.gz"
    gone_size = gone.stat().st_size
    gone.unlink()
    (tree / "labelsTr" / "mv03_y.nii.gz").write_bytes(b"stale")
    result = fp.check_tree(tree, exclude=[LICENCE], expected=expected)
    assert not result.matches
    assert result.missing == ("labelsTr/mv03.nii.gz",)
    assert result.unexpected == ("labelsTr/mv03_y.nii.gz",)
    assert result.nfiles == 9 and result.size == expected.size - gone_size + 5
    message = result.message()
    assert f"{result.size:,} bytes (expected {expected.size:,})" in message
    assert "missing labelsTr/mv03.nii.gz" in message
    assert "unexpected labelsTr/mv03_y.nii.gz" in message
    record = result.record()
    assert record["matches"] is False and record["observed"]["nfiles"] == 9
    assert record["missing"] == ["labelsTr/mv03.nii.gz"]


def test_a_difference_warns_or_fails_under_strict(tree_and_dvc, caplog):
    tree, expected = tree_and_dvc
    (tree / "metadata" / "mv01.json").write_text("{}")
    result = fp.check_tree(tree, exclude=[LICENCE], expected=expected)
    with caplog.at_level("WARNING", logger="minivess_bundle.fetch.fingerprint"):
        fp.enforce(result, strict=False, path=tree)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "differs from the authors' DVC snapshot" in caplog.records[0].getMessage()
    with pytest.raises(fp.FingerprintError, match=r"^fingerprint: the renamed tree differs"):
        fp.enforce(result, strict=True, path=tree)


def test_many_differing_names_are_listed_ten_then_counted(tmp_path):
    tree = write_tree(tmp_path / "renamed", ["mv01"])
    result = fp.check_tree(tree, exclude=[LICENCE])  # against the authors' 210 names
    assert len(result.missing) == 207 and result.unexpected == ()
    assert "and 197 more" in result.message()
    assert "3 files (expected 210)" in result.message()


def test_only_full_real_builds_are_checked():
    everything = list(ALL_VOLUMES)
    for source in ("zip", "dir", "ebrains"):
        assert fp.applies(source, everything)
        assert fp.applies(source, reversed(everything))
        assert not fp.applies(source, everything[:69])
    assert not fp.applies("synthetic", everything)


def test_command_writes_the_record_and_fails_only_under_strict(tmp_path):
    tree = write_tree(tmp_path / "renamed", VOLUMES)
    out = tmp_path / "fingerprint.json"
    cmd = [sys.executable, "-m", "minivess_bundle.cli", "fingerprint", str(tree)]
    cmd += ["--exclude", LICENCE, "--out", str(out)]
    ran = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    record = json.loads(out.read_text())
    assert record["matches"] is False and record["expected"]["md5"] == fp.AUTHORS.md5
    assert record["observed"]["nfiles"] == 9 and len(record["missing"]) == 201
    assert "WARNING" in ran.stderr and "differs from the authors' DVC snapshot" in ran.stderr
    first = out.read_bytes()
    strict = subprocess.run(cmd + ["--strict"], capture_output=True, text=True, timeout=60)
    assert strict.returncode == 1
    assert strict.stderr.startswith("error: fingerprint: the renamed tree differs")
    assert out.read_bytes() == first  # deterministic record


def dry_run_jobs(workdir: Path, source: Path, volumes: str | list[str]) -> str:
    make_workdir(workdir, source="dir", dir={"path": str(source)}, volumes=volumes)
    ran = run_snakemake(workdir, "-n", "--quiet", "rules")
    return ran.stdout + ran.stderr


def test_workflow_checks_full_real_builds_only(tmp_path):
    source = tmp_path / "release"
    source.mkdir()
    full = dry_run_jobs(tmp_path / "full", source, "all")
    assert re.search(r"\bfingerprint\b", full) and re.search(r"\bfetch\s+70\b", full)
    subset = dry_run_jobs(tmp_path / "subset", source, ["mv01"])
    assert "fetch" in subset and not re.search(r"\bfingerprint\b", subset)
    synthetic = make_workdir(tmp_path / "synthetic", source="synthetic", volumes="all")
    ran = run_snakemake(synthetic, "-n", "--quiet", "rules")
    assert "fetch" in ran.stdout + ran.stderr
    assert not re.search(r"\bfingerprint\b", ran.stdout + ran.stderr)


@pytest.mark.workflow
def test_the_rule_prints_and_records_the_verdict_and_passes_strict_on(tmp_path):
    """A full `dir` build whose renamed tree is in place (70 tiny volumes + licence): the
    rule's verdict (this copy is not the authors') is on the console and in
    results/fingerprint.json, and fingerprint.strict makes the job run with --strict."""
    source = tmp_path / "release"
    source.mkdir()
    workdir = make_workdir(tmp_path / "work", source="dir", dir={"path": str(source)})
    write_tree(workdir / "results" / "renamed", list(ALL_VOLUMES))
    ran = run_snakemake(workdir, "--cores", "1", "results/fingerprint.json")
    record = json.loads((workdir / "results" / "fingerprint.json").read_text())
    assert record["matches"] is False
    assert record["observed"]["nfiles"] == 210 and record["missing"] == record["unexpected"] == []
    assert "same file count (210)" in record["message"]
    assert "some file's contents differ" in record["message"]
    assert f"minivess-bundle: WARNING: {record['message']}" in ran.stdout + ran.stderr
    # fingerprint.strict reaches the job as --strict (the CLI test above proves what it does;
    # a real failing run costs Snakemake's ~60 s shutdown after a failed job)
    strict = run_snakemake(
        workdir,
        "-n",
        "-p",
        "--forcerun",
        "fingerprint",
        "results/fingerprint.json",
        "--config",
        "fingerprint={strict: true}",
    )
    printed = (strict.stdout + strict.stderr).splitlines()
    command = next(line for line in printed if "minivess-bundle fingerprint" in line)
    assert command.split("minivess-bundle", 1)[1].startswith(" fingerprint results/renamed ")
    assert "--exclude 'metadata/Licence (CCBY-NC-SA).pdf'" in command
    assert command.rstrip().endswith("--strict > logs/fingerprint.log 2>&1")


def test_the_release_records_the_check_in_the_bags_provenance(tmp_path):
    from bundle_utils import make_inputs

    from minivess_bundle import cli
    from minivess_bundle.bundle.release import ReleaseSpec, Section, build_release

    tree = write_tree(tmp_path / "renamed", VOLUMES)
    record = tmp_path / "fingerprint.json"
    assert cli.main(["fingerprint", str(tree), "--exclude", LICENCE, "--out", str(record)]) == 0
    inputs = make_inputs(tmp_path / "in")
    raw = tuple(str(p) for p in sorted(inputs["raw"].rglob("*")) if p.is_file())
    report = tmp_path / "validation_report.json"
    report.write_text(json.dumps({"valid": ["mv01", "mv02"], "quarantined": {}}))

    def provenance(out: Path, fingerprint: str) -> dict:
        spec = ReleaseSpec(
            out_dir=str(out),
            version="0.1.0",
            source_date_epoch=1677628800,
            validation_report=str(report),
            summary=str(out / "summary.json"),
            raw=Section(str(inputs["raw"]), raw),
            fingerprint=fingerprint,
            archive=False,
        )
        build_release(spec)
        return json.loads((out / "minivess-0.1.0" / "data" / "provenance.json").read_text())

    recorded = provenance(tmp_path / "out", str(record))["stages"]["fingerprint"]
    assert recorded == json.loads(record.read_text())
    assert recorded["matches"] is False and recorded["expected"]["md5"] == fp.AUTHORS.md5
    assert "fingerprint" not in provenance(tmp_path / "plain", "")["stages"]  # unchecked
