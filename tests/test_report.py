"""Report figures: spacing with its unit in every MIP title, readable voxel-size ticks."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from minivess_bundle.core.nifti import make_image, minivess_header, write_nifti
from minivess_bundle.report.figures import _load, dataset_figure, readable_log_ticks, spacing_title


def test_mip_titles_give_every_spacing_in_micrometres_whatever_the_header_unit(
    tmp_path: Path,
) -> None:
    data = np.zeros((6, 5, 4), np.uint16)
    for name, zooms, unit in (
        ("released", (4.97, 4.97, 5.0), "unknown"),  # MiniVess: um values, no unit
        ("processed", (0.001, 0.001, 0.002), "mm"),
        ("micron", (2.0, 2.0, 3.0), "micron"),
    ):
        header = minivess_header("image")
        header.set_xyzt_units(unit)
        write_nifti(tmp_path / f"{name}.nii.gz", make_image(data, zooms, header))
    titles = {}
    for name in ("released", "processed", "micron"):
        voxels, zooms_um = _load(tmp_path / f"{name}.nii.gz")
        titles[name] = spacing_title(voxels.shape, zooms_um)
    assert titles == {
        "released": "6x5x4 voxels @ 4.97 x 4.97 x 5 µm",
        "processed": "6x5x4 voxels @ 1 x 1 x 2 µm",
        "micron": "6x5x4 voxels @ 2 x 2 x 3 µm",
    }


def _figure_with_spacings(xs: list[float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.75), dpi=80)  # one panel of dataset.png
    ax.scatter(xs, xs)
    ax.set_xscale("log")
    return fig, ax


def _label_boxes(fig, ax) -> list:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not hasattr(fig.canvas, "get_renderer"):  # a closed figure: attach a canvas again
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [
        label.get_window_extent(renderer)
        for label in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
        if label.get_visible()
        and label.get_text()
        and ax.get_xlim()[0] <= label.get_position()[0] <= ax.get_xlim()[1]
    ]


def _overlaps(boxes) -> int:
    boxes = sorted(boxes, key=lambda b: b.x0)
    return sum(1 for a, b in pairwise(boxes) if b.x0 < a.x1)


@pytest.mark.parametrize("spacings", [[0.45, 0.6, 0.9, 1.2, 4.97], [0.7, 1.0, 1.4], [1.0, 1.0]])
def test_voxel_size_ticks_are_plain_numbers_that_never_overlap(spacings) -> None:
    import matplotlib.pyplot as plt

    fig, ax = _figure_with_spacings(spacings)
    readable_log_ticks(ax.xaxis)
    boxes = _label_boxes(fig, ax)
    texts = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert boxes and _overlaps(boxes) == 0
    assert all("$" not in t and "times" not in t for t in texts), texts
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]


def test_dataset_figure_labels_both_voxel_size_axes_with_the_unit(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    volumes = {
        f"mv{i:02d}": {
            "shape": [512, 512, 20 + i],
            "spacing": [0.4 + 0.3 * i, 0.4 + 0.3 * i, 1.0 + i],
            "units": {"report_units": "um"},
            "foreground_fraction": 0.05,
            "intensity": {"p1": 10, "p50": 100, "p99": 1000},
        }
        for i in range(1, 16)
    }
    report = tmp_path / "validation_report.json"
    report.write_text(json.dumps({"volumes": volumes, "valid": sorted(volumes)}))
    captured = {}
    original = plt.close

    def keep(fig=None):
        captured["fig"] = fig
        return original(fig)

    plt.close = keep
    try:
        dataset_figure(tmp_path / "dataset.png", report)
    finally:
        plt.close = original
    ax = captured["fig"].axes[1]
    assert ax.get_xlabel() == "in-plane spacing (um, log scale)"
    assert ax.get_ylabel() == "z spacing (um)"
    assert _overlaps(_label_boxes(captured["fig"], ax)) == 0
    assert (tmp_path / "dataset.png").stat().st_size > 10_000


def test_matplotlib_default_log_ticks_overlap_on_the_release_spacing_range() -> None:
    """What readable_log_ticks fixes: the default labels collide on 0.45..4.97 um."""
    import matplotlib.pyplot as plt

    fig, ax = _figure_with_spacings([0.45, 0.6, 0.9, 1.2, 4.97])
    overlaps = _overlaps(_label_boxes(fig, ax))
    plt.close(fig)
    assert overlaps >= 1


def test_load_streams_plain_files_and_keeps_nibabels_scaling_for_scaled_ones(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(3)
    data = rng.integers(0, 4000, (7, 6, 5), dtype=np.uint16)
    plain = tmp_path / "plain.nii.gz"
    write_nifti(plain, make_image(data, (1.0, 1.0, 2.0), minivess_header("image")))
    voxels, zooms = _load(plain)
    assert voxels.shape == (7, 6, 5) and voxels.dtype == np.uint16
    assert np.array_equal(voxels, data) and zooms == (1.0, 1.0, 2.0)
    scaled_image = make_image(data, (1.0, 1.0, 2.0), minivess_header("image"))
    scaled_image.header.set_slope_inter(2.0, 10.0)
    scaled = tmp_path / "scaled.nii"
    nib.save(scaled_image, scaled)
    voxels, _ = _load(scaled)
    assert np.array_equal(voxels, data * 2.0 + 10.0)  # the values nibabel gives


def test_report_mips_command_draws_each_valid_volume_as_volume_mip_does(tmp_path):
    import subprocess
    import sys

    from minivess_bundle.report.figures import volume_mip

    rng = np.random.default_rng(4)
    for vol in ("mv03", "mv04"):
        for tree, zooms in (("before", (0.5, 0.5, 2.0)), ("after", (0.001, 0.001, 0.001))):
            image = rng.integers(0, 4000, (12, 10, 6), dtype=np.uint16)
            for kind, data in (("image", image), ("label", (image > 3000).astype(np.uint8))):
                header = minivess_header(kind)
                if tree == "after":
                    header.set_xyzt_units("mm")
                sub = "imagesTr" if kind == "image" else "labelsTr"
                write_nifti(
                    tmp_path / tree / sub / f"{vol}.nii.gz", make_image(data, zooms, header)
                )
    report = tmp_path / "validation_report.json"
    report.write_text(json.dumps({"valid": ["mv03"], "quarantined": [{"volume": "mv04"}]}))
    subprocess.run(
        [sys.executable, "-m", "minivess_bundle.cli", "report-mips"]
        + ["--validation-report", str(report), "--mip-dir", str(tmp_path / "mip")]
        + ["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after")]
        + ["--threads", "1"],
        check=True,
    )
    assert sorted(p.name for p in (tmp_path / "mip").iterdir()) == ["mv03.png"]  # valid only
    one = volume_mip(tmp_path / "one.png", "mv03", tmp_path / "before", tmp_path / "after")
    drawn = (tmp_path / "mip" / "mv03.png").read_bytes()
    assert drawn == one.read_bytes()
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n" and len(drawn) > 5000


def test_report_mips_drawn_by_two_workers_are_the_bytes_one_draws(tmp_path):
    """report_mips' threads: worker processes draw the volumes side by side, same PNGs."""
    from minivess_bundle.report.figures import volume_mips

    rng = np.random.default_rng(5)
    volumes = ["mv01", "mv02", "mv03"]
    for vol in volumes:
        for tree, zooms in (("before", (0.5, 0.5, 2.0)), ("after", (0.001, 0.001, 0.001))):
            image = rng.integers(0, 4000, (12, 10, 6), dtype=np.uint16)
            for kind, data in (("image", image), ("label", (image > 3000).astype(np.uint8))):
                header = minivess_header(kind)
                if tree == "after":
                    header.set_xyzt_units("mm")
                sub = "imagesTr" if kind == "image" else "labelsTr"
                write_nifti(
                    tmp_path / tree / sub / f"{vol}.nii.gz", make_image(data, zooms, header)
                )
    trees = (tmp_path / "before", tmp_path / "after")
    one = volume_mips(tmp_path / "one", volumes, *trees, threads=1)
    two = volume_mips(tmp_path / "two", volumes, *trees, threads=2)
    assert [p.name for p in two] == [f"{vol}.png" for vol in volumes]
    assert [p.read_bytes() for p in two] == [p.read_bytes() for p in one]
    assert len({p.read_bytes() for p in one}) == 3  # three different volumes, three figures


def test_report_mips_memory_is_the_largest_volumes_from_its_header(tmp_path):
    from minivess_bundle import resources

    small, big = tmp_path / "small.nii.gz", tmp_path / "big.nii.gz"
    write_nifti(
        small, make_image(np.zeros((10, 10, 10), np.uint16), (1, 1, 1), minivess_header("image"))
    )
    write_nifti(
        big, make_image(np.zeros((100, 100, 50), np.uint16), (1, 1, 1), minivess_header("image"))
    )
    expected = (
        resources.REPORT_MIPS_BASE_MB + 500_000 * resources.REPORT_MIPS_BYTES_PER_VOXEL / 2**20
    )
    assert resources.report_mips_mem_mb([small, big]) == int(np.ceil(expected))
    assert resources.report_mips_mem_mb([big, small], attempt=2) == int(np.ceil(expected * 1.5))
    # nothing readable yet (a dry run before the checkpoint): the fallback
    assert resources.report_mips_mem_mb([]) == resources.FALLBACK_MB
    # two workers hold two volumes at once
    assert resources.report_mips_mem_mb([small, big], threads=2) == int(np.ceil(2 * expected))
    assert resources.report_mips_mem_mb([tmp_path / "missing.nii.gz"]) == resources.FALLBACK_MB


# --- the drift gallery: tall depth panels, difference panels, µm scale bars ----------------


def test_depth_views_are_exaggerated_to_at_least_100_px_and_no_more_than_needed():
    from minivess_bundle.report.figures import (
        GALLERY_CELL,
        GALLERY_DPI,
        MIN_SIDE_PX,
        depth_exaggeration,
    )

    width_px = GALLERY_CELL[0] * GALLERY_DPI * 0.92
    # the real mv68 grid (512 x 512 x 106 at 0.994 x 0.994 x 2 µm): 70 px natural -> x2
    assert depth_exaggeration((512, 512, 106), (0.994, 0.994, 2.0)) == 2
    # a tiny build's volume, 46 x 46 x 8 at 1 µm: 26 px natural -> x4 (104 px)
    assert depth_exaggeration((46, 46, 8), (1.0, 1.0, 1.0)) == 4
    # the boundary: exactly MIN_SIDE_PX tall needs no exaggeration, a hair less needs x2
    depth_um = MIN_SIDE_PX / width_px * 100.0
    assert depth_exaggeration((100, 100, 1), (1.0, 1.0, depth_um)) == 1
    assert depth_exaggeration((100, 100, 1), (1.0, 1.0, depth_um * 0.999)) == 2


def test_scale_bar_is_the_longest_round_length_under_a_quarter_of_the_panel():
    from minivess_bundle.report.figures import _pyplot, scale_bar

    plt = _pyplot()
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((50, 200)))
    assert scale_bar(ax, 200, 1.0, 50) == 50.0  # 50 px = a quarter exactly
    assert scale_bar(ax, 199, 1.0, 50) == 20.0  # 50 px would pass the quarter
    assert scale_bar(ax, 512, 0.994, 512) == 100.0  # mv68: 100 µm is 101 px of 128
    assert scale_bar(ax, 64, 2.0, 64) == 20.0  # a coarser grid: 20 µm is 10 px of 16
    plt.close(fig)


def test_difference_view_keeps_the_sign_of_the_largest_change_along_the_projection():
    from minivess_bundle.report.figures import difference_view

    clean = np.full((3, 2, 4), 100, np.uint16)
    drifted = clean.copy()
    drifted[0, 0, 1] = 130  # +30 at depth 1
    drifted[0, 0, 3] = 50  # -50 at depth 3: the larger change of that column
    drifted[2, 1, :] = 110  # +10 everywhere along the column
    view = difference_view(clean, drifted, side=False)  # along z, x left to right
    assert view.shape == (2, 3) and view[0, 0] == -50 and view[1, 2] == 10
    assert view[1, 0] == 0
    side = difference_view(clean, drifted, side=True)  # along y: depth top to bottom
    assert side.shape == (4, 3) and side[3, 0] == -50 and side[1, 0] == 30
    assert difference_view(clean, drifted[:, :, :3], side=False) is None  # other grid


def test_gallery_shows_tall_depth_views_and_red_blue_difference_panels(tmp_path):
    """A tiny drift build (intensity, depth_blur, annotation at levels 1, 3, 5) of a
    foreign volume, 40 x 40 x 8 at 1 µm: seven columns; the difference columns hold the
    diverging map (red and blue); and the depth row's x-z view, 8 µm deep, is drawn at
    least MIN_SIDE_PX tall."""
    import matplotlib.image
    from foreign_volumes import foreign_pair, save_authors_nifti

    from minivess_bundle.drift.driver import generate_drifted_dataset
    from minivess_bundle.report.figures import GALLERY_CELL, GALLERY_DPI, MIN_SIDE_PX, drift_gallery

    source = tmp_path / "src"
    for vol, seed in (("mv01", 4), ("mv02", 5)):
        image, label, spacing = foreign_pair((40, 40, 8), (1.0, 1.0, 1.0), 0.06, 30.0, "all", seed)
        save_authors_nifti(image, spacing, 1000.0, source / "imagesTr" / f"{vol}.nii.gz")
        save_authors_nifti(label, spacing, 1.0, source / "labelsTr" / f"{vol}.nii.gz")
    kinds = ["annotation", "depth_blur", "intensity"]
    config = {"volumes": ["mv01"], "levels": [1, 3, 5], "types": kinds}
    generate_drifted_dataset(source, tmp_path / "drift", config)
    manifest = json.loads((tmp_path / "drift" / "drift_manifest.json").read_text())
    assert not manifest.get("skipped")  # every kind made: one row each
    out = drift_gallery(tmp_path / "gallery.png", manifest, source, tmp_path / "drift")
    pixels = matplotlib.image.imread(out)[..., :3]
    cell_w, cell_h = (GALLERY_DPI * side for side in GALLERY_CELL)
    assert pixels.shape[:2] == (round(cell_h * 3), round(cell_w * 7))
    red = pixels[..., 0] > pixels[..., 2] + 0.2  # RdBu_r: dark blue is (0.02, 0.19, 0.38)
    blue = pixels[..., 2] > pixels[..., 0] + 0.2
    for row, kind in enumerate(kinds):  # rows are sorted by kind
        band = slice(round(row * cell_h), round((row + 1) * cell_h))
        diffs = slice(round(4 * cell_w), None)
        if kind == "annotation":  # the mask: blue removed (and red added)
            assert blue[band, diffs].sum() > 50, kind
        if kind == "intensity":  # a gain: red or blue, not white
            assert (red | blue)[band, diffs].sum() > 200, kind
        if kind == "depth_blur":  # the x-z view: rows of image at least MIN_SIDE_PX tall
            clean_panel = pixels[band, : round(cell_w)]
            grey = (np.ptp(clean_panel, axis=-1) < 0.02) & (clean_panel.mean(axis=-1) < 0.98)
            tall = np.count_nonzero(grey.any(axis=1))
            assert tall >= MIN_SIDE_PX, tall
