"""Fixtures for downstream test suites: synthetic data with the release's conventions, in
both layouts, served by an installed pytest plugin that a separate project picks up."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from minivess_bundle.consumers.loader import discover_nifti_pairs
from minivess_bundle.testing import DESCRIP, create_synthetic_nifti_dataset


def test_imagestr_layout_has_the_release_header_conventions_and_says_synthetic(tmp_path):
    ds = create_synthetic_nifti_dataset(tmp_path, n_volumes=3, spatial_size=(32, 32, 8))
    assert ds.volumes == ("mv01", "mv02", "mv03")
    for folder, ext in (("imagesTr", ".nii.gz"), ("labelsTr", ".nii.gz"), ("metadata", ".json")):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == [
            f"{v}{ext}" for v in ds.volumes
        ]
    assert [p["id"] for p in discover_nifti_pairs(tmp_path)] == list(ds.volumes)
    for pair in ds.pairs:
        image, label = nib.load(pair["image"]), nib.load(pair["label"])
        for img, dtype, cal_max in ((image, np.uint16, 1000), (label, np.uint8, 1)):
            header = img.header
            assert img.shape == (32, 32, 8) and header.get_data_dtype() == dtype
            assert header.get_zooms() == pytest.approx((0.994, 0.994, 2.0))
            assert int(header["xyzt_units"]) == 0  # micrometre numbers, unit unset
            assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 0)
            with gzip.open(img.get_filename()) as raw:  # as stored (nibabel resets scl_*)
                stored = nib.Nifti1Header.from_fileobj(raw)
            assert (float(stored["scl_slope"]), float(stored["scl_inter"])) == (1.0, 0.0)
            assert float(header["cal_max"]) == cal_max
            assert header["descrip"].item() == DESCRIP
        mask = np.asarray(label.dataobj)
        assert set(np.unique(mask)) == {0, 1}
        assert abs(mask.mean() - 0.10) <= 0.005, mask.mean()  # ~10 % foreground, per volume
        values = np.asarray(image.dataobj)
        assert values[mask == 1].mean() > values[mask == 0].mean() + 500  # vessels are bright
        meta = json.loads(pair["metadata"].read_text())
        assert meta["synthetic"] is True and meta["volume"] == pair["volume"]
        assert meta["spacing_um"] == [0.994, 0.994, 2.0] and meta["shape"] == [32, 32, 8]


def test_raw_layout_uses_the_ebrains_names_and_the_same_bytes(tmp_path):
    raw = create_synthetic_nifti_dataset(tmp_path / "raw", n_volumes=2, layout="raw")
    tr = create_synthetic_nifti_dataset(tmp_path / "tr", n_volumes=2)
    assert [p["label"].relative_to(raw.root).as_posix() for p in raw.pairs] == [
        "seg/mv01_y.nii.gz",
        "seg/mv02_y.nii.gz",
    ]
    for a, b in zip(raw.pairs, tr.pairs, strict=True):
        assert a["image"].relative_to(raw.root).as_posix() == f"raw/{a['volume']}.nii.gz"
        assert a["metadata"].relative_to(raw.root).as_posix() == f"json/{a['volume']}.json"
        assert a["image"].read_bytes() == b["image"].read_bytes()
        assert a["label"].read_bytes() == b["label"].read_bytes()


def test_same_arguments_give_the_same_bytes_and_volumes_differ(tmp_path):
    one = create_synthetic_nifti_dataset(tmp_path / "a", n_volumes=2, spatial_size=(16, 16, 4))
    two = create_synthetic_nifti_dataset(tmp_path / "b", n_volumes=2, spatial_size=(16, 16, 4))
    for a, b in zip(one.pairs, two.pairs, strict=True):
        for key in ("image", "label", "metadata"):
            assert a[key].read_bytes() == b[key].read_bytes()
    assert one.pairs[0]["image"].read_bytes() != one.pairs[1]["image"].read_bytes()
    other = create_synthetic_nifti_dataset(tmp_path / "c", n_volumes=1, seed=1)
    assert other.pairs[0]["label"].read_bytes() != one.pairs[0]["label"].read_bytes()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_volumes": 0}, "n_volumes 0"),
        ({"n_volumes": 71}, "n_volumes 71"),
        ({"spatial_size": (32, 32)}, "spatial_size"),
        ({"spatial_size": (32, 32, 1)}, "spatial_size"),
        ({"foreground": 0.0}, "foreground 0.0"),
        ({"foreground": 1.0}, "foreground 1.0"),
        ({"layout": "nnunet"}, "layout 'nnunet'"),
    ],
)
def test_bad_arguments_are_refused_by_name(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_synthetic_nifti_dataset(tmp_path, **kwargs)


def test_boundary_sizes_and_fractions_are_accepted(tmp_path):
    ds = create_synthetic_nifti_dataset(tmp_path, n_volumes=1, spatial_size=(2, 2, 2))
    assert nib.load(ds.pairs[0]["image"]).shape == (2, 2, 2)
    dense = create_synthetic_nifti_dataset(tmp_path / "d", n_volumes=1, foreground=0.5)
    assert abs(np.asarray(nib.load(dense.pairs[0]["label"]).dataobj).mean() - 0.5) <= 0.005


DOWNSTREAM_TEST = """
import sys

import pytest


def test_the_plugin_is_loaded_without_heavy_imports():
    assert "minivess_bundle.consumers.pytest_plugin" in sys.modules
    # (numpy may come from other installed plugins; ours loads nothing before a fixture runs)
    ours = ("scipy", "nibabel", "minivess_bundle.testing", "minivess_bundle.core.nifti")
    assert sorted(m for m in ours if m in sys.modules) == []


def test_imagestr_fixture(synthetic_nifti_dataset):
    import nibabel as nib

    ds = synthetic_nifti_dataset
    assert sorted(p.name for p in (ds.root / "labelsTr").iterdir()) == [
        "mv01.nii.gz", "mv02.nii.gz", "mv03.nii.gz"]
    assert nib.load(ds.root / "imagesTr" / "mv02.nii.gz").shape == (32, 32, 8)
    assert (ds.root / "metadata" / "mv03.json").is_file()


def test_release_fixture(synthetic_nifti_release):
    names = sorted(p.relative_to(synthetic_nifti_release.root).as_posix()
                   for p in synthetic_nifti_release.root.rglob("*") if p.is_file())
    assert names[:3] == ["json/mv01.json", "json/mv02.json", "json/mv03.json"]
    assert "seg/mv03_y.nii.gz" in names and "raw/mv01.nii.gz" in names


def test_factory_fixture(create_synthetic_nifti_dataset, tmp_path):
    ds = create_synthetic_nifti_dataset(tmp_path, n_volumes=2, spatial_size=(16, 16, 4))
    assert ds.volumes == ("mv01", "mv02")
    print("DOWNSTREAM", ds.root)
"""


def test_importing_the_plugin_costs_no_heavy_import():
    code = (
        "import sys, minivess_bundle.consumers.pytest_plugin; "
        "print(sorted(m for m in ('numpy', 'scipy', 'nibabel') if m in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == "[]", ran.stderr


def installed_package(tmp_path: Path) -> Path:
    """This source tree installed as a user installs it (a wheel built by pip, into a
    folder of its own): the ``pytest11`` entry point comes from its real metadata."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    # Build with this venv's setuptools when it is new enough for pyproject.toml's
    # build-system (offline); else let pip fetch the build backend from its index.
    from importlib.metadata import version

    from packaging.version import Version

    local = Version(version("setuptools")) >= Version("70.1")  # bdist_wheel built in
    build = ["--no-index", "--no-build-isolation"] if local else []
    ran = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *build]
        + ["--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    entry_points = (site / "minivess_bundle-0.1.0.dist-info" / "entry_points.txt").read_text()
    assert "[pytest11]\nminivess = minivess_bundle.consumers.pytest_plugin" in entry_points
    return site


def test_a_downstream_project_gets_the_fixtures_from_the_installed_package(tmp_path):
    """A separate project (its own tests/, no conftest) run with `python -m pytest`: the
    fixtures come only through the installed package's entry point."""
    site = installed_package(tmp_path)
    project = tmp_path / "downstream"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_uses_minivess.py").write_text(textwrap.dedent(DOWNSTREAM_TEST))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(site)  # the installed package, not this checkout's src/
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert "4 passed" in ran.stdout
    assert "DOWNSTREAM" in ran.stdout
    # and the plugin came from the installed copy
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import minivess_bundle.consumers.pytest_plugin as p; print(p.__file__)",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
