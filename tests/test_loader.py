"""Tests for loader.py: finding image/label pairs in the three known layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from minivess_bundle.consumers.loader import discover_nifti_pairs
from minivess_bundle.core import nifti
from minivess_bundle.core.errors import LoaderError


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\x1f\x8b fake " + rel.encode())


def test_imagestr_layout_pairs_by_name_and_sorts_by_id(tmp_path):
    touch(
        tmp_path,
        "imagesTr/mv10.nii.gz",
        "imagesTr/mv02.nii.gz",
        "imagesTr/mv01.nii.gz",
        "labelsTr/mv02.nii.gz",
        "labelsTr/mv10.nii.gz",
        "labelsTr/mv01.nii.gz",
    )

    records = discover_nifti_pairs(tmp_path)

    assert records == [
        {
            "id": vol,
            "image": str(tmp_path / "imagesTr" / f"{vol}.nii.gz"),
            "label": str(tmp_path / "labelsTr" / f"{vol}.nii.gz"),
        }
        for vol in ("mv01", "mv02", "mv10")
    ]


def test_imagestr_layout_picks_up_metadata_only_where_present(tmp_path):
    touch(
        tmp_path,
        "imagesTr/mv01.nii.gz",
        "imagesTr/mv02.nii.gz",
        "labelsTr/mv01.nii.gz",
        "labelsTr/mv02.nii.gz",
        "metadata/mv02.json",
    )

    records = discover_nifti_pairs(tmp_path)

    assert "metadata" not in records[0]
    assert records[1]["metadata"] == str(tmp_path / "metadata" / "mv02.json")


def test_ebrains_layout_pairs_raw_with_seg_y_labels_and_json(tmp_path):
    touch(
        tmp_path,
        "raw/mv01.nii.gz",
        "raw/mv02.nii.gz",
        "seg/mv01_y.nii.gz",
        "seg/mv02_y.nii.gz",
        "json/mv01.json",
        "Licence (CCBY-NC-SA).pdf",
    )

    records = discover_nifti_pairs(tmp_path)

    assert [r["id"] for r in records] == ["mv01", "mv02"]
    assert records[0] == {
        "id": "mv01",
        "image": str(tmp_path / "raw" / "mv01.nii.gz"),
        "label": str(tmp_path / "seg" / "mv01_y.nii.gz"),
        "metadata": str(tmp_path / "json" / "mv01.json"),
    }
    assert "metadata" not in records[1]


def test_ebrains_label_without_y_suffix_is_an_error_naming_it(tmp_path):
    touch(tmp_path, "raw/mv01.nii.gz", "seg/mv01_y.nii.gz", "seg/mv02.nii.gz")

    with pytest.raises(LoaderError, match=r"labels mv02\.nii\.gz lack the '_y' suffix"):
        discover_nifti_pairs(tmp_path)


@pytest.mark.parametrize("base", ["processed", "data/processed"])
def test_bundle_layout_is_found_under_processed(tmp_path, base):
    touch(
        tmp_path,
        "bagit.txt",
        "manifest-sha256.txt",
        f"{base}/imagesTr/mv05.nii.gz",
        f"{base}/labelsTr/mv05.nii.gz",
        f"{base}/metadata/mv05.json",
    )

    records = discover_nifti_pairs(tmp_path)

    root = tmp_path / base
    assert records == [
        {
            "id": "mv05",
            "image": str(root / "imagesTr" / "mv05.nii.gz"),
            "label": str(root / "labelsTr" / "mv05.nii.gz"),
            "metadata": str(root / "metadata" / "mv05.json"),
        }
    ]


def test_bag_whose_data_folder_holds_imagestr_directly_is_found(tmp_path):
    touch(tmp_path, "bagit.txt", "data/imagesTr/case1.nii", "data/labelsTr/case1.nii")

    records = discover_nifti_pairs(tmp_path)

    assert [(r["id"], Path(r["label"]).relative_to(tmp_path).as_posix()) for r in records] == [
        ("case1", "data/labelsTr/case1.nii")
    ]


def test_non_mvnn_ids_and_plain_nii_files_load_in_string_order(tmp_path):
    touch(
        tmp_path,
        "imagesTr/case_b.nii",
        "imagesTr/case_a.nii.gz",
        "labelsTr/case_b.nii",
        "labelsTr/case_a.nii.gz",
    )

    assert [r["id"] for r in discover_nifti_pairs(tmp_path)] == ["case_a", "case_b"]


def test_hidden_temporaries_and_non_nifti_files_are_ignored(tmp_path):
    touch(
        tmp_path,
        "imagesTr/mv01.nii.gz",
        "imagesTr/.mv02.nii.gz.tmp-123",
        "imagesTr/.mv03.nii.gz",
        "imagesTr/README.txt",
        "labelsTr/mv01.nii.gz",
        "labelsTr/.mv02.nii.gz.tmp-456",
        "labelsTr/dataset.json",
    )

    assert [r["id"] for r in discover_nifti_pairs(tmp_path)] == ["mv01"]


def test_image_without_label_is_an_error_naming_the_image(tmp_path):
    touch(tmp_path, "imagesTr/mv01.nii.gz", "imagesTr/mv03.nii.gz", "labelsTr/mv01.nii.gz")

    with pytest.raises(LoaderError) as err:
        discover_nifti_pairs(tmp_path)

    assert str(err.value) == (
        f"mv03: loader: image {tmp_path / 'imagesTr' / 'mv03.nii.gz'} has no label"
        f" — expected one labelsTr/<id>.nii.gz per imagesTr/<id>.nii.gz ({tmp_path})"
    )


def test_label_without_image_is_an_error_naming_the_label(tmp_path):
    touch(tmp_path, "raw/mv01.nii.gz", "seg/mv01_y.nii.gz", "seg/mv04_y.nii.gz")

    with pytest.raises(LoaderError) as err:
        discover_nifti_pairs(tmp_path)

    message = str(err.value)
    assert message.startswith("mv04: loader: label ")
    assert str(tmp_path / "seg" / "mv04_y.nii.gz") in message
    assert "seg/<id>_y.nii.gz per raw/<id>.nii.gz" in message


def test_several_orphans_are_all_named_in_one_error(tmp_path):
    touch(tmp_path, "imagesTr/a.nii.gz", "imagesTr/b.nii.gz", "labelsTr/c.nii.gz")

    with pytest.raises(LoaderError) as err:
        discover_nifti_pairs(tmp_path)

    message = str(err.value)
    assert message.startswith("loader: image ")
    for name in ("imagesTr/a.nii.gz", "imagesTr/b.nii.gz", "labelsTr/c.nii.gz"):
        assert name in message


def test_same_id_as_nii_and_nii_gz_is_an_error(tmp_path):
    touch(tmp_path, "imagesTr/mv01.nii", "imagesTr/mv01.nii.gz", "labelsTr/mv01.nii.gz")

    with pytest.raises(LoaderError, match=r"images id given twice: mv01\.nii and mv01\.nii\.gz"):
        discover_nifti_pairs(tmp_path)


def test_unrecognised_folder_error_lists_the_layouts_looked_for(tmp_path):
    touch(tmp_path, "volumes/mv01.nii.gz")

    with pytest.raises(LoaderError) as err:
        discover_nifti_pairs(tmp_path)

    message = str(err.value)
    assert message.startswith("loader: no known layout — expected one of ")
    for layout in (
        "imagesTr/+labelsTr/",
        "raw/+seg/",
        "processed/imagesTr/+labelsTr/",
        "data/processed/imagesTr/+labelsTr/",
    ):
        assert layout in message


def test_image_folder_without_label_folder_is_reported_as_incomplete(tmp_path):
    touch(tmp_path, "imagesTr/mv01.nii.gz")

    with pytest.raises(LoaderError, match="incomplete layout: imagesTr/ without labelsTr/"):
        discover_nifti_pairs(tmp_path)


def test_two_layouts_in_one_folder_is_an_error_not_a_guess(tmp_path):
    touch(
        tmp_path,
        "imagesTr/mv01.nii.gz",
        "labelsTr/mv01.nii.gz",
        "raw/mv01.nii.gz",
        "seg/mv01_y.nii.gz",
    )

    with pytest.raises(LoaderError, match="several layouts found"):
        discover_nifti_pairs(tmp_path)


def test_empty_layout_is_an_error(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()

    with pytest.raises(LoaderError, match="no NIfTI pairs in imagesTr/ and labelsTr/"):
        discover_nifti_pairs(tmp_path)


def test_missing_data_folder_is_an_error(tmp_path):
    with pytest.raises(LoaderError, match="folder does not exist"):
        discover_nifti_pairs(tmp_path / "absent")


def test_discovered_paths_open_as_the_written_volumes(tmp_path):
    image = np.full((3, 4, 2), 500, dtype=np.uint16)
    label = np.zeros((3, 4, 2), dtype=np.uint8)
    label[1, 1, 1] = 1
    spacing = (0.994, 0.994, 2.0)
    nifti.write_nifti(
        tmp_path / "raw" / "mv68.nii.gz",
        nifti.make_image(image, spacing, nifti.minivess_header("image")),
    )
    nifti.write_nifti(
        tmp_path / "seg" / "mv68_y.nii.gz",
        nifti.make_image(label, spacing, nifti.minivess_header("label")),
    )

    (record,) = discover_nifti_pairs(tmp_path)

    assert int(np.asarray(nifti.read_nifti(record["label"]).dataobj).sum()) == 1
    assert int(np.asarray(nifti.read_nifti(record["image"]).dataobj).max()) == 500
