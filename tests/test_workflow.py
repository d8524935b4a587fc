"""The real workflow, run by Snakemake on tiny synthetic data."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from conftest import require, tree_digest
from workflow_utils import (
    build_digest,
    make_workdir,
    pinned_git_commit,
    release_tree,
    run_snakemake,
)

from minivess_bundle.core.fsio import sha256_file

pytestmark = pytest.mark.workflow
# Tiny volumes, every stage (drift: all types at one level).
TINY = {
    "synthetic": {"size_xy": 16, "max_z": 8},
    "volumes": ["mv01", "mv02", "mv39"],
    "drift": {"levels": [1]},
}
BUNDLE = "results/bundle/minivess-0.1.0"
EBRAINS_ZIP = "d-bf268b89-1420-476b-b428-b85a913eb523.zip"


@pytest.fixture(scope="module", autouse=True)
def one_commit():
    """Every build here records the same commit in its provenance, even if HEAD moves while
    the module runs, so the archives compared byte for byte differ only by what is tested."""
    with pinned_git_commit():
        yield


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """One complete synthetic build, shared by the assertions below."""
    workdir = make_workdir(tmp_path_factory.mktemp("synthetic"), **TINY)
    result = run_snakemake(workdir, "--cores", "2", "all")
    return workdir, result


def test_synthetic_build_lands_every_renamed_file(synthetic_run):
    workdir, _ = synthetic_run
    renamed = workdir / "results" / "renamed"
    for vol in TINY["volumes"]:
        for rel in (f"imagesTr/{vol}.nii.gz", f"labelsTr/{vol}.nii.gz", f"metadata/{vol}.json"):
            assert (renamed / rel).is_file(), rel
        assert (workdir / "logs" / "fetch" / f"{vol}.log").is_file()
        assert (workdir / "benchmarks" / "fetch" / f"{vol}.tsv").is_file()
    assert (renamed / "metadata" / "LICENCE-synthetic.txt").read_text().startswith("SYNTHETIC")
    staging = workdir / "results" / "staging"
    assert not list(staging.iterdir())  # each fetch job's own staging folder is removed
    meta = json.loads((renamed / "metadata" / "mv39.json").read_text())
    assert meta["synthetic"] is True and meta["shape"] == [16, 16, 5]


def test_inventory_hashes_match_the_files(synthetic_run):
    workdir, _ = synthetic_run
    inventory = json.loads((workdir / "results" / "renamed_inventory.json").read_text())
    assert inventory["count"] == 3
    for entry in inventory["volumes"]:
        for role in ("image", "label", "metadata"):
            path = workdir / "results" / "renamed" / entry[role]["path"]
            assert entry[role]["sha256"] == sha256_file(path)


def test_second_run_has_nothing_to_do(synthetic_run):
    workdir, _ = synthetic_run
    result = run_snakemake(workdir, "--cores", "2", "all", "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_settings_outside_the_bag_never_rebuild_it(synthetic_run):
    """drift_eval and ome_zarr write outside the bag: changing them leaves `all` with nothing
    to do; a setting the bag records (the codec level) reruns the bundle."""
    workdir, _ = synthetic_run
    outside = ("--config", "drift_eval={alpha: 0.01, repetitions: 3}")
    result = run_snakemake(workdir, "--cores", "2", "all", "--dry-run", *outside)
    assert "Nothing to be done" in result.stdout + result.stderr
    inside = ("--config", "compression={codec: isal, level: 3}")
    result = run_snakemake(workdir, "--cores", "2", "all", "--dry-run", *inside)
    assert re.search(r"^bundle\s+1$", result.stdout + result.stderr, re.MULTILINE)


def test_a_kind_the_plan_cannot_make_is_recorded_not_dropped(synthetic_run):
    """Three valid volumes are too few for prevalence at level 1 (default types): the
    manifest says so, and the manifest job's log names it. A (volume, kind) the plan skips
    on the volume's own facts (the tiny build's sparse mv39 has too few vessel voxels to
    rank for saturation) is listed with its volume and reason too."""
    workdir, _ = synthetic_run
    manifest = json.loads((workdir / "results" / "drift_manifest.json").read_text())
    prevalence = [e for e in manifest["skipped"] if e["drift_type"] == "prevalence"]
    assert prevalence == [
        {
            "drift_type": "prevalence",
            "reason": "needs at least 7 valid volumes for levels [1] to choose different sets; "
            "3 valid",
        }
    ]
    per_volume = [e for e in manifest["skipped"] if e["drift_type"] != "prevalence"]
    for entry in per_volume:
        assert entry["volume"] in TINY["volumes"] and entry["reason"], entry
        made = {(v["volume"], v["drift_type"]) for v in manifest["variants"]}
        assert (entry["volume"], entry["drift_type"]) not in made
    log = (workdir / "logs/drift/manifest.log").read_text()
    assert "prevalence skipped" in log
    assert all(f"{e['drift_type']} skipped" in log for e in per_volume)
    assert "prevalence" not in {entry["drift_type"] for entry in manifest["sets"]}


def test_a_prevalence_only_drift_config_bundles_its_sets(tmp_path):
    """drift.types [prevalence] plans no per-volume variant, only set-level jobs: the bag
    still holds their dataset.json files and the drift manifest lists them."""
    volumes = [f"mv0{i}" for i in range(1, 8)]  # 7: the fewest for levels 1, 3, 5
    drift = {"types": ["prevalence"], "levels": [1, 3, 5]}
    workdir = make_workdir(
        tmp_path, synthetic={"size_xy": 16, "max_z": 8}, volumes=volumes, drift=drift
    )
    run_snakemake(workdir, "--cores", "2", "all")
    bag = workdir / BUNDLE
    sets = sorted(p.relative_to(bag).as_posix() for p in bag.glob("data/drift/prevalence/*/*"))
    assert sets == [f"data/drift/prevalence/{level}/dataset.json" for level in (1, 3, 5)]
    manifest = json.loads((bag / "data" / "drift_manifest.json").read_text())
    kinds = {(entry["drift_type"], entry["level"]) for entry in manifest["sets"]}
    assert manifest["variants"] == []
    assert kinds == {("prevalence", 1), ("prevalence", 3), ("prevalence", 5)}


def test_build_is_identical_across_core_counts_and_directories(synthetic_run, tmp_path):
    """The FULL archive (the release .tar, every stage's bytes in it: raw, processed, drift,
    reports, provenance, RO-Crate, DVC hashes) is byte-identical for --cores 2 in one folder
    and --cores 1 in another, deeper one; one extra build checks both."""
    workdir, _ = synthetic_run
    other = make_workdir(tmp_path / "a" / "much" / "longer" / "path", **TINY)
    run_snakemake(other, "--cores", "1", "all")
    assert str(other) != str(workdir) and len(str(other)) > len(str(workdir))
    digest = build_digest(workdir)  # checked against the .tar's bytes and its summary
    assert build_digest(other) == digest
    archive = "results/bundle/minivess-0.1.0.tar"
    assert (other / archive).read_bytes() == (workdir / archive).read_bytes()
    assert (other / f"{archive}.sha256").read_text() == (workdir / f"{archive}.sha256").read_text()
    assert digest in (workdir / f"{archive}.sha256").read_text()
    assert tree_digest(other / BUNDLE) == tree_digest(workdir / BUNDLE)
    assert tree_digest(other / "results" / "renamed") == tree_digest(
        workdir / "results" / "renamed"
    )


def _ebrains_zip(staging, path, prefix="d-bf268b89-1420-476b-b428-b85a913eb523/"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(staging.rglob("*")):
            rel = file.relative_to(staging).as_posix()
            if file.is_file() and rel.split("/")[0] in {"raw", "seg", "json"}:
                archive.write(file, prefix + rel)
        archive.writestr(prefix + "Licence (CCBY-NC-SA).pdf", b"%PDF-1.4 licence stand-in\n")
    return path


def _volume_digest(workdir):
    digest = tree_digest(workdir / "results" / "renamed")
    return {k: v for k, v in digest.items() if not k.startswith("metadata/L")}


def test_zip_and_dir_sources_give_the_synthetic_bytes(synthetic_run, tmp_path):
    workdir, _ = synthetic_run
    release = release_tree(workdir, tmp_path / "release")
    archive = _ebrains_zip(release, tmp_path / EBRAINS_ZIP)
    zipped = make_workdir(
        tmp_path / "zip", volumes=TINY["volumes"], source="zip", zip={"path": str(archive)}
    )
    licence_target = "results/renamed/metadata/Licence (CCBY-NC-SA).pdf"
    run_snakemake(zipped, "--cores", "2", "results/renamed_inventory.json", licence_target)
    assert _volume_digest(zipped) == _volume_digest(workdir)
    licence = zipped / "results" / "renamed" / "metadata" / "Licence (CCBY-NC-SA).pdf"
    assert licence.read_bytes().startswith(b"%PDF")

    folder = tmp_path / "extracted"
    release_tree(zipped, folder)
    by_dir = make_workdir(
        tmp_path / "dir", volumes=TINY["volumes"], source="dir", dir={"path": str(folder)}
    )
    run_snakemake(by_dir, "--cores", "2", "results/renamed_inventory.json")
    assert _volume_digest(by_dir) == _volume_digest(workdir)


def test_corrupt_zip_member_fails_naming_it_and_leaves_no_partial_file(synthetic_run, tmp_path):
    workdir, _ = synthetic_run
    archive = tmp_path / EBRAINS_ZIP
    staging = release_tree(workdir, tmp_path / "release")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for file in sorted(staging.rglob("*")):
            rel = file.relative_to(staging).as_posix()
            if file.is_file() and rel.split("/")[0] in {"raw", "seg", "json"}:
                out.write(file, rel)
        out.writestr("Licence (CCBY-NC-SA).pdf", b"%PDF-1.4\n")
    data = bytearray(archive.read_bytes())
    member = (staging / "raw" / "mv02.nii.gz").read_bytes()
    at = bytes(data).index(member[:64]) + 40
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    broken = make_workdir(
        tmp_path / "broken", volumes=TINY["volumes"], source="zip", zip={"path": str(archive)}
    )
    result = run_snakemake(
        broken, "--cores", "1", "--keep-going", "results/renamed_inventory.json", check=False
    )
    assert result.returncode != 0
    log = (broken / "logs" / "fetch" / "mv02.log").read_text()
    assert "mv02: fetch:" in log and "raw/mv02.nii.gz" in log and "CRC" in log
    assert not list((broken / "results").rglob("mv02.nii.gz"))  # staged or renamed
    leftovers = [p.name for p in (broken / "results" / "staging").rglob(".*tmp-*")]
    assert leftovers == []
    assert (broken / "results" / "renamed" / "imagesTr" / "mv01.nii.gz").is_file()  # others went on


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"sourse": "zip"}, "sourse"),
        ({"seed": "abc"}, "seed"),
        ({"synthetic": {"size_xy": 4}}, "size_xy"),
        ({"volumes": ["mv1; rm -rf /"]}, "volumes"),
        ({"source": "zip"}, "zip.path is empty"),
        ({"compression": {"codec": "brotli"}}, "codec"),
    ],
)
def test_bad_config_fails_at_start_naming_the_key(tmp_path, overrides, needle):
    workdir = make_workdir(tmp_path, **overrides)
    result = run_snakemake(workdir, "--dry-run", "all", check=False)
    assert result.returncode != 0
    assert needle in result.stdout + result.stderr
    assert not (workdir / "results").exists()


def test_lint_is_clean(tmp_path):
    result = run_snakemake(make_workdir(tmp_path), "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_report_html_holds_the_figures(synthetic_run, tmp_path):
    workdir, _ = synthetic_run
    out = tmp_path / "report.html"
    run_snakemake(workdir, "--report", str(out))
    page = out.read_text(errors="replace")
    report = json.loads((workdir / "results" / "validation_report.json").read_text())
    for name in ("Volumes", "Drift variants", "Dataset", "Validation", "drift_gallery.png"):
        assert name in page, name
    for vol in report["valid"]:
        assert f"{vol}.png" in page
    assert len(page) > 50_000  # the pictures are embedded


def test_check_target_trains_one_epoch_and_exports_to_nnunet(synthetic_run):
    require("torch", hint="the train extra")
    require("monai", hint="the train extra")
    from minivess_bundle.consumers.nnunet import check_nnunet_dataset

    workdir, _ = synthetic_run
    run_snakemake(workdir, "--cores", "2", "check")
    metrics = json.loads((workdir / "results" / "check" / "smoke_metrics.json").read_text())
    losses = metrics["loss"]["per_step"]
    assert losses and all(0 < value < 10 for value in losses)
    assert 0.0 <= metrics["validation"]["dice"] <= 1.0
    assert metrics["device"] in ("cpu", "cuda")
    dataset = workdir / "results" / "nnunet" / "Dataset501_MiniVess"
    report = json.loads((workdir / "results" / "validation_report.json").read_text())
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == len(report["valid"])
    assert check_nnunet_dataset(dataset) == []


def _small_release(out, volumes=("mv01", "mv02", "mv03")):
    """A small release folder (EBRAINS layout) whose volumes pass validation, with the
    licence file, and the config of a fast dir-source build of it."""
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    for vol in volumes:
        write_synthetic_volume(out, vol, seed=3, size_xy=64, max_z=12)
    (out / "Licence (CCBY-NC-SA).pdf").write_bytes(b"%PDF-1.4 licence stand-in\n")
    return out, {
        "volumes": list(volumes),
        "source": "dir",
        "dir": {"path": str(out)},
        "drift": {"enabled": False},
        "resample": {"target_spacing_um": "native"},
    }


def _release_with_bad_mask(out):
    """A small release whose mv02 mask holds the value 2 (and its build config)."""
    import numpy as np

    from minivess_bundle.core.nifti import read_nifti, write_nifti

    out, config = _small_release(out)
    mask_path = out / "seg" / "mv02_y.nii.gz"
    image = read_nifti(mask_path)
    data = np.asarray(image.dataobj).copy()
    data.flat[0] = 2
    write_nifti(mask_path, image.__class__(data, image.affine, image.header))
    return out, config


def test_invalid_volume_is_quarantined_and_the_build_completes(tmp_path):
    release, config = _release_with_bad_mask(tmp_path / "release")
    build = make_workdir(tmp_path / "build", **config)
    run_snakemake(build, "--cores", "2", "all")
    bag = build / BUNDLE / "data"
    quarantine = json.dumps(json.loads((bag / "quarantine.json").read_text()))
    assert "mv02" in quarantine and "mask values {0, 1, 2}" in quarantine
    assert "mv01" not in quarantine and "mv03" not in quarantine
    dataset = json.loads((bag / "dataset.json").read_text())
    assert all("mv02" not in entry["image"] for entry in dataset["training"])
    assert not (bag / "processed" / "imagesTr" / "mv02.nii.gz").exists()
    # bundle.quarantined: omit (the default) -- the refused volume ships nowhere
    assert _volumes_in(bag) == {"mv01", "mv03"}
    assert not (bag / "quarantine").exists()
    # include: its untouched originals ship under quarantine/, still never under raw/
    make_workdir(build, **config, bundle={"quarantined": "include"})
    run_snakemake(build, "--cores", "2", "all")
    assert _volumes_in(bag) == {"mv01", "mv02", "mv03"}
    assert not any((bag / "raw").rglob("mv02*"))
    assert sorted(p.relative_to(bag / "quarantine").as_posix() for p in bag.rglob("*mv02*")) == [
        "imagesTr/mv02.nii.gz",
        "labelsTr/mv02.nii.gz",
        "metadata/mv02.json",
    ]
    release_file = release / "seg" / "mv02_y.nii.gz"
    assert sha256_file(bag / "quarantine" / "labelsTr" / "mv02.nii.gz") == sha256_file(release_file)
    assert "mask values {0, 1, 2}" in (bag / "quarantine.json").read_text()


def _volumes_in(bag):
    """The volume ids any payload file of the bag is named after."""
    return {p.name.split(".")[0] for p in bag.rglob("mv[0-9][0-9]*") if p.is_file()}


def _payload(bag):
    return sorted(p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file())


def test_shrinking_the_volume_list_leaves_no_stale_volume_in_the_bag(tmp_path):
    """Rebuilt with fewer volumes, the bag holds exactly the declared ones (mv03's files
    stay in results/renamed/ from the first run but are not declared any more)."""
    config = {
        **TINY,
        "synthetic": {"size_xy": 32, "max_z": 8},
        "volumes": ["mv01", "mv02", "mv03"],
    }
    build = make_workdir(tmp_path, **config)
    no_drift = ("--config", "drift={enabled: false}")  # nested values typed by the schema
    run_snakemake(build, "--cores", "2", "all", *no_drift)
    assert not (build / "results" / "drift").exists()
    bag = build / BUNDLE / "data"
    assert _volumes_in(bag) == {"mv01", "mv02", "mv03"}
    make_workdir(build, **{**config, "volumes": ["mv01", "mv02"]})
    run_snakemake(build, "--cores", "2", "all", *no_drift)
    assert (build / "results" / "renamed" / "imagesTr" / "mv03.nii.gz").is_file()
    assert _volumes_in(bag) == {"mv01", "mv02"}
    assert [p for p in _payload(bag) if p.startswith("raw/")] == [
        "raw/imagesTr/mv01.nii.gz",
        "raw/imagesTr/mv02.nii.gz",
        "raw/labelsTr/mv01.nii.gz",
        "raw/labelsTr/mv02.nii.gz",
        "raw/metadata/LICENCE-synthetic.txt",
        "raw/metadata/mv01.json",
        "raw/metadata/mv02.json",
    ]
    manifest = (build / BUNDLE / "manifest-sha256.txt").read_text()
    assert "mv03" not in manifest
    assert json.loads((bag / "dataset.json").read_text())["numTraining"] == 2


def test_invalid_volume_with_on_invalid_fail_stops_naming_volume_file_and_check(tmp_path):
    _, config = _release_with_bad_mask(tmp_path / "release")
    build = make_workdir(tmp_path / "build", **config, validate={"on_invalid": "fail"})
    result = run_snakemake(build, "--cores", "2", "--keep-going", "all", check=False)
    assert result.returncode != 0
    log = (build / "logs" / "validate" / "mv02.log").read_text()
    assert "error: mv02: validate: label_values: mask values {0, 1, 2}" in log
    assert "results/renamed/labelsTr/mv02.nii.gz" in log
    assert not (build / "results" / "validation" / "mv02.json").exists()
    assert not (build / BUNDLE).exists()


def test_editing_a_dir_source_file_refetches_that_volume_only(tmp_path):
    """The dir source's three files per volume are inputs: an edited file re-fetches its
    volume (and only it), and the new bytes reach the bag. Staging is temporary."""
    release, config = _small_release(tmp_path / "release", ("mv01", "mv02"))
    build = make_workdir(tmp_path / "build", **config)
    run_snakemake(build, "--cores", "2", "all")
    assert not [p for p in (build / "results" / "staging").rglob("*") if p.is_file()]
    renamed = build / "results" / "renamed" / "metadata"
    before = {vol: (renamed / f"{vol}.json").stat().st_mtime_ns for vol in ("mv01", "mv02")}
    edited = json.loads((release / "json" / "mv02.json").read_text()) | {"edited": True}
    (release / "json" / "mv02.json").write_text(json.dumps(edited))
    result = run_snakemake(build, "--cores", "2", "all")
    assert "fetch" in result.stdout + result.stderr
    assert json.loads((renamed / "mv02.json").read_text())["edited"] is True
    assert (renamed / "mv01.json").stat().st_mtime_ns == before["mv01"]
    bag_json = build / BUNDLE / "data" / "raw" / "metadata" / "mv02.json"
    assert sha256_file(bag_json) == sha256_file(release / "json" / "mv02.json")


def test_a_huge_header_cannot_make_a_job_ask_for_huge_memory(tmp_path):
    """mv02's image header claims 30000^3 uint16 voxels in a 1 KiB-of-data file: the
    validate job asks for what the file can hold (not 309 TB), then refuses the file."""
    import gzip
    import re

    import nibabel as nib
    import numpy as np

    release, config = _small_release(tmp_path / "release", ("mv01", "mv02"))
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint16)
    header.set_data_shape((30000, 30000, 30000))
    header["vox_offset"] = 352
    lying = header.binaryblock + b"\0" * 4 + bytes(1024)
    (release / "raw" / "mv02.nii.gz").write_bytes(gzip.compress(lying, mtime=0))
    build = make_workdir(tmp_path / "build", **{**config, "resample": {}})
    run_snakemake(build, "--cores", "2", "--until", "fetch")
    result = run_snakemake(build, "--cores", "2", "-n", "all")
    plan = result.stdout + result.stderr
    # (indented by 4, or by 8 inside a group job's listing)
    block = re.search(r"rule validate:\n(?: +.*\n)*? +wildcards: vol=mv02\n(?: +.*\n)*", plan)
    assert block, plan[-3000:]
    mem_mb = int(re.search(r"mem_mb=(\d+)", block.group(0)).group(1))
    assert 300 < mem_mb < 2000  # the header alone: 308,990,778 MB
    run_snakemake(build, "--cores", "2", "all")
    report = json.loads((build / "results" / "validation_report.json").read_text())
    assert [q["volume"] for q in report["quarantined"]] == ["mv02"]


def test_archive_off_leaves_no_tar_and_verifies_the_same_payload(synthetic_run, tmp_path):
    """bundle.archive: false (the default outside the tests): the bundle job reruns, the
    earlier tar and its checksum are removed, verify checks the bag alone, and the payload
    is byte for byte the one the tar build bagged (only provenance's config and the two
    files listing provenance's sha256 differ)."""
    import hashlib
    import shutil

    workdir, _ = synthetic_run
    other = tmp_path / "no-archive"
    shutil.copytree(workdir, other, symlinks=True)
    result = run_snakemake(other, "--cores", "2", "all", "--config", "bundle={archive: false}")
    bundle = other / "results" / "bundle"
    assert not (bundle / "minivess-0.1.0.tar").exists()
    assert not (bundle / "minivess-0.1.0.tar.sha256").exists()
    manifest = (bundle / "minivess-0.1.0" / "manifest-sha256.txt").read_bytes()
    digest = hashlib.sha256(manifest).hexdigest()
    said = result.stdout + result.stderr
    assert (
        f"minivess-bundle: results/bundle/minivess-0.1.0 manifest-sha256.txt sha256 {digest}"
        in said
    )
    verified = (bundle / "minivess-0.1.0.verified.txt").read_text()
    assert verified.startswith("OK minivess-0.1.0: ") and digest in verified
    before = (workdir / BUNDLE / "manifest-sha256.txt").read_text().splitlines()
    after = manifest.decode().splitlines()
    assert len(after) == len(before) > 10
    changed = {line.split("  ")[1] for line in set(before) ^ set(after)}
    # provenance's config says archive: false; RO-Crate and Croissant list its sha256
    assert changed == {
        "data/provenance.json",
        "data/ro-crate-metadata.json",
        "data/croissant.json",
    }, changed
    summary = json.loads((bundle / "minivess-0.1.0.json").read_text())
    assert (summary["archive"], summary["sha256"], summary["manifest_digest"]) == ("", "", digest)
