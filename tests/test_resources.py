"""Memory requests from untrusted headers are clamped by the file's size and grow on retry."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from minivess_bundle import resources
from minivess_bundle.core.nifti import MAX_DEFLATE_RATIO
from minivess_bundle.core.spec import to_json
from minivess_bundle.drift.spec import DriftSpec


def _lying_file(path, shape=(30000, 30000, 30000)):
    """A gzip NIfTI whose header claims ``shape`` (uint16) but holds 1 KiB of data."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint16)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + bytes(1024)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


def test_a_huge_header_asks_only_for_what_the_file_can_hold(tmp_path):
    path = _lying_file(tmp_path / "mv01.nii.gz")
    claimed, plausible = resources.plausible_voxels(path)
    assert claimed == 30000**3
    size = path.stat().st_size
    assert plausible == (size * MAX_DEFLATE_RATIO + (1 << 16) - 352) // 2
    # the header alone would ask for 30000^3 * 12 bytes = 309 TB
    mem = resources.per_voxel_mem_mb("validate", path)
    assert mem == int(np.ceil(300 + plausible * 12 / 2**20))
    assert mem < 2000
    assert resources.per_voxel_mem_mb("drift", path) < 2000


def test_a_truthful_header_keeps_its_estimate(tmp_path):
    data = np.zeros((64, 64, 10), np.uint16)
    path = tmp_path / "mv02.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    claimed, plausible = resources.plausible_voxels(path)
    assert claimed == plausible == 64 * 64 * 10
    assert resources.per_voxel_mem_mb("validate", path) == int(np.ceil(300 + 40960 * 12 / 2**20))


def test_an_uncompressed_file_holds_exactly_its_bytes(tmp_path):
    path = _lying_file(tmp_path / "x.nii.gz")
    raw = tmp_path / "mv03.nii"
    raw.write_bytes(gzip.decompress(path.read_bytes()))
    _, plausible = resources.plausible_voxels(raw)
    assert plausible == (raw.stat().st_size - 352) // 2 == 512


def test_resample_estimate_is_scaled_to_the_plausible_voxels(tmp_path):
    from minivess_bundle.resample import BASE_MEM_MB, NUMPY_BASE_MEM_MB

    path = _lying_file(tmp_path / "mv04.nii.gz", shape=(30000, 30000, 300))
    mem = resources.resample_mem_mb(path, [1.0, 1.0, 1.0], "um")
    assert NUMPY_BASE_MEM_MB < mem < 20000
    mem = resources.resample_mem_mb(path, [1.0, 1.0, 1.0], "um", interpolator="bspline")
    assert BASE_MEM_MB < mem < 20000


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1000), (2, 1500), (3, 2000), (0, 1000)])
def test_memory_grows_with_each_retry(attempt, expected):
    assert resources.for_attempt(1000, attempt) == expected


def test_a_missing_file_gets_the_fallback_grown_per_attempt(tmp_path):
    assert resources.per_voxel_mem_mb("validate", tmp_path / "nope.nii.gz") == 2048
    assert resources.per_voxel_mem_mb("validate", tmp_path / "nope.nii.gz", attempt=2) == 3072


#: The drift spec of seed 1, isal level 2 (what the drift rule passes).
DRIFT_SPEC = to_json(DriftSpec(seed=1, codec="isal", level=2))


def _drift_job_peak_mb(tmp_path, kind: str, size_xy: int) -> tuple[float, int]:
    """(peak RSS in MiB, voxels) of one drift job (levels 1, 3, 5) on synthetic mv68."""
    import re
    import subprocess
    import sys

    from minivess_bundle.core.nifti import read_header
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    clean = write_synthetic_volume(tmp_path / f"c{size_xy}", "mv68", 5, size_xy, 110)
    out = tmp_path / f"{kind}{size_xy}"
    code = (  # VmHWM of the job's own process (a forked child's rusage counts its parent)
        "import sys\nfrom minivess_bundle.cli import main\nmain(sys.argv[1:])\n"
        "print(open('/proc/self/status').read())\n"
    )
    # fmt: off
    command = [
        sys.executable, "-c", code, "drift", "mv68", "--type", kind,
        "--drift-level", "1", "3", "5", "--image", clean["image"], "--label", clean["label"],
        "--spec", DRIFT_SPEC,
        "--out-image", *(str(out / f"{level}.i.nii.gz") for level in (1, 3, 5)),
        "--out-label", *(str(out / f"{level}.l.nii.gz") for level in (1, 3, 5)),
        "--entry", *(str(out / f"{level}.json") for level in (1, 3, 5)),
    ]
    # fmt: on
    status = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    peak_kib = int(re.search(r"^VmHWM:\s+(\d+) kB$", status, re.M)[1])
    return peak_kib / 1024, read_header(clean["image"]).n_voxels


@pytest.mark.parametrize("kind", ["annotation", "z_step"])
def test_drift_job_memory_per_voxel_is_covered_by_its_kinds_estimate(tmp_path, kind):
    """A drift job writes three levels and its peak grows per voxel by no more than
    resources.drift_mem_mb assumes; annotation needs its own figure (above the generic)."""
    small_mb, small = _drift_job_peak_mb(tmp_path, kind, 64)
    big_mb, big = _drift_job_peak_mb(tmp_path, kind, 192)
    per_voxel = (big_mb - small_mb) * 2**20 / (big - small)
    assumed = resources.DRIFT_BYTES_PER_VOXEL.get(kind, resources.BYTES_PER_VOXEL["drift"])
    assert 0 < per_voxel <= assumed
    assert small_mb < resources.BASE_MB["drift"]
    if kind == "annotation":  # the generic figure would not cover it
        assert per_voxel > resources.BYTES_PER_VOXEL["drift"]
    big_path = tmp_path / "c192" / "raw" / "mv68.nii.gz"
    assert resources.drift_mem_mb(kind, big_path) >= big_mb
    assert resources.drift_mem_mb(kind, big_path) == int(
        np.ceil(resources.BASE_MB["drift"] + big * assumed / 2**20)
    )


def test_no_rule_asks_for_more_cpus_than_a_two_cpu_node_has():
    """A SLURM job gets cpus_per_task = threads; a rule asking for more CPUs than any node has
    stays pending for ever (the bundle's threads: 4 never started on CI's 2-CPU node). Two is
    the smallest node the workflow supports; --set-threads raises a rule's share."""
    import re

    from conftest import REPO

    asked = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule, body in re.findall(
            r"^(?:rule|checkpoint) (\w+):\n(.*?)(?=^rule |^checkpoint |\Z)",
            smk.read_text(),
            re.M | re.S,
        ):
            for value in re.findall(r"^\s+threads:\s*(\S+)", body, re.M):
                asked[rule] = int(value)
    assert asked["bundle"] == 2 and asked["resample"] == 1
    assert max(asked.values()) == 2, asked


def test_submission_groups_pair_volumes_in_order_and_name_them():
    """70 volumes are 35 groups of two per stage (the SLURM submissions), named after their
    first and last volume; an odd count leaves the last volume alone."""
    from minivess_bundle.core.volumes import ALL_VOLUMES

    groups = [resources.submission_group("process", vol, ALL_VOLUMES) for vol in ALL_VOLUMES]
    assert len(set(groups)) == 35 and len(ALL_VOLUMES) == 70
    assert groups[:3] == ["process_mv01-mv02", "process_mv01-mv02", "process_mv03-mv04"]
    assert groups[-1] == "process_mv69-mv70"
    three = ["mv01", "mv02", "mv39"]
    assert [resources.submission_group("process", v, three) for v in three] == [
        "process_mv01-mv02",
        "process_mv01-mv02",
        "process_mv39",
    ]
    # the boundary: one volume per submission is a group per volume; three join three
    assert resources.submission_group("process", "mv02", three, 1) == "process_mv02"
    assert resources.submission_group("process", "mv39", three, 3) == "process_mv01-mv39"
    assert resources.submission_group("process", "mv07", three) == "process_mv07"
    with pytest.raises(ValueError, match="per_submission must be >= 1, got 0"):
        resources.submission_group("process", "mv01", three, 0)


def test_the_slurm_profile_joins_exactly_the_groups_the_rules_name():
    """profiles/slurm's group-components name the process stage with the pair size and the
    tail (its two unconnected parts joined), its cores are the CPUs a submission may use;
    the submitted per-volume rules name the process group function, the tail's rules the
    tail group, and no grouped rule is a localrule (a local member keeps a group local);
    fetch (which renames) and validate are localrules (the submit host), in no group."""
    import re

    import yaml
    from conftest import REPO

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    n = resources.VOLUMES_PER_SUBMISSION
    assert profile["group-components"] == [
        f"{resources.GROUP_PROCESS}={n}",
        f"{resources.GROUP_TAIL}=2",
    ]
    assert profile["cores"] == resources.GROUP_CORES == 8
    groups = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for rule, body in re.findall(
            r"^\s*(?:rule|checkpoint) (\w+):\n(.*?)(?=^\s*rule |^\s*checkpoint |\Z)",
            smk.read_text(),
            re.M | re.S,
        ):
            if match := re.search(r"^\s+group:\n\s+([\w.]+)$", body, re.M):
                groups[rule] = match.group(1)
    assert groups == {
        "resample": "process_group",
        "drift": "process_group",
        "drift_gradual": "process_group",
        "bundle": "resources.GROUP_TAIL",
        "verify_bundle": "resources.GROUP_TAIL",
        "report_figures": "resources.GROUP_TAIL",
    }
    local = set()
    for smk in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for block in smk.read_text().split("localrules:")[1:]:
            local |= set(re.findall(r"^\s+(\w+),$", block.split("\n\n")[0], re.M))
    assert not set(groups) & local
    assert {"fetch", "fetch_ebrains", "download_zip", "validate"} <= local
