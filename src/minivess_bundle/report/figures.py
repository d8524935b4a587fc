"""Figures for ``snakemake --report``: vessels to look at, not only JSON to read.

Maximum-intensity projections (MIPs) along z of the image with the mask overlaid,
before and after resampling; a drift gallery (one volume across drift types and
levels); and dataset plots (shapes, spacings, intensity percentiles, foreground
fractions) from the validation reports. matplotlib is imported lazily (Agg
backend): only the report rules pay for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Mask overlay colour (RGBA) on the grey MIP.
OVERLAY = (1.0, 0.15, 0.1, 0.3)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mip(array: np.ndarray) -> np.ndarray:
    """Maximum-intensity projection along z, transposed so x runs left to right."""
    import numpy as np

    return np.asarray(array).max(axis=2).T


def normalise(image: np.ndarray, low: float = 1.0, high: float = 99.7) -> np.ndarray:
    """Scale to [0, 1] between two percentiles (robust to hot pixels)."""
    import numpy as np

    lo, hi = np.percentile(image, [low, high])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


#: NIfTI ``xyzt_units`` spatial codes -> micrometres per unit. 0 (no unit) is how the
#: MiniVess release stores its micrometre values (validate.source_units: um).
UM_PER_UNIT = {0: 1.0, 1: 1e6, 2: 1e3, 3: 1.0}


def _load(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """The voxels (indexed x, y, z) and the spacing in micrometres (whatever unit the
    header stores). A 3-D file without intensity scaling (every file of a build) is
    streamed into one array (:func:`~minivess_bundle.core.nifti.read_voxels`: no copy of the
    decompressed bytes); anything else goes through nibabel's scaling."""
    import numpy as np

    from ..core.nifti import read_header, read_nifti, read_voxels, spatial_problem

    info = read_header(path)
    header = info.header
    factor = UM_PER_UNIT.get(int(header["xyzt_units"]) & 0x07, 1.0)
    zooms = tuple(float(z) * factor for z in header.get_zooms()[:3])
    slope, inter = header.get_slope_inter()
    plain = slope in (None, 1.0) and inter in (None, 0.0)
    if plain and len(info.shape) == 3 and spatial_problem(info) is None:
        return read_voxels(info).T, zooms
    image = read_nifti(path)
    return np.asarray(image.dataobj), zooms


def spacing_title(shape: Sequence[int], zooms_um: Sequence[float]) -> str:
    """``"636x636x92 voxels @ 1 x 1 x 1 µm"``: every spacing in micrometres, with its unit."""
    size = "x".join(str(int(s)) for s in shape)
    spacing = " x ".join(f"{z:.3g}" for z in zooms_um)
    return f"{size} voxels @ {spacing} µm"


def _draw(ax, image_path: str | Path, label_path: str | Path | None, title: str) -> None:
    import numpy as np

    image, zooms = _load(image_path)
    ax.imshow(
        normalise(mip(image)), cmap="gray", interpolation="nearest", aspect=zooms[1] / zooms[0]
    )
    if label_path is not None:
        label = mip(_load(label_path)[0])
        overlay = np.zeros((*label.shape, 4), dtype=np.float32)
        overlay[label > 0] = OVERLAY
        ax.imshow(overlay, interpolation="nearest", aspect=zooms[1] / zooms[0])
    ax.set_title(f"{title}\n{spacing_title(image.shape[:3], zooms)}", fontsize=8)
    ax.set_axis_off()


def mip_figure(
    out_png: str | Path,
    panels: Sequence[tuple[str, str | Path, str | Path | None]],
    suptitle: str = "",
) -> Path:
    """One row of MIP panels ``(title, image, label-or-None)``; label drawn as a red overlay."""
    from ..core.fsio import atomic_path

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), squeeze=False)
    for ax, (title, image, label) in zip(axes[0], panels, strict=True):
        _draw(ax, image, label, title)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return Path(out_png)


#: Mask outline colour on the grey MIP (the drift gallery).
OUTLINE = "#ff3b1f"


#: Kinds acting along depth: the gallery shows them as an x-z side view (MIP along y),
#: where a z MIP would hide them (the brightest voxel of a column is usually shallow).
DEPTH_KINDS = frozenset({"attenuation", "bleaching", "compound", "depth_blur", "pmt", "z_step"})


def side_mip(array: np.ndarray) -> np.ndarray:
    """Maximum-intensity projection along y: x left to right, depth top to bottom."""
    import numpy as np

    return np.asarray(array).max(axis=1).T


#: The drift gallery's panel size (inches) and resolution: one cell per panel.
GALLERY_CELL = (2.1, 2.35)
GALLERY_DPI = 80
#: An x-z side view is drawn at least this many pixels tall: depth is exaggerated by a
#: whole factor (written in the panel's title) when the volume is shallower than that.
MIN_SIDE_PX = 100
#: Scale bar lengths (µm) to choose from: the longest under a quarter of the panel width.
SCALE_BARS_UM = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def depth_exaggeration(shape: Sequence[int], zooms_um: Sequence[float]) -> int:
    """The whole factor that draws an x-z view at least :data:`MIN_SIDE_PX` pixels tall in
    a gallery cell (1 when it already is)."""
    import math

    width_px = GALLERY_CELL[0] * GALLERY_DPI * 0.92
    height_px = width_px * (shape[2] * zooms_um[2]) / (shape[0] * zooms_um[0])
    return max(1, math.ceil(MIN_SIDE_PX / max(height_px, 1e-9)))


def scale_bar(ax, width_px: int, um_per_px: float, height_px: int, colour: str = "w") -> float:
    """A horizontal µm scale bar in the lower left of ``ax``; its length in µm."""
    from matplotlib.patches import Rectangle

    fitting = [b for b in SCALE_BARS_UM if b / um_per_px <= width_px / 4] or [SCALE_BARS_UM[0]]
    length = fitting[-1]
    x0, y0 = 0.05 * width_px, height_px - 0.07 * height_px - 1
    bar = Rectangle((x0, y0), length / um_per_px, max(1.0, 0.025 * height_px), color=colour)
    ax.add_patch(bar)
    ax.text(x0, y0 - 0.02 * height_px, f"{length} µm", color=colour, fontsize=5, va="bottom")
    return float(length)


def _gallery_panel(
    ax, image_path, label_path, vrange, title: str, side: bool = False, stretch: int = 1
) -> None:
    """A MIP in the row's shared display range ``vrange``, the mask MIP as an outline,
    a µm scale bar from this file's own spacing (depth drawn ``stretch`` times taller)."""
    image, zooms = _load(image_path)
    label, _ = _load(label_path)
    project = side_mip if side else mip
    aspect = (zooms[2] * stretch if side else zooms[1]) / zooms[0]
    view = project(image)
    ax.imshow(
        view, cmap="gray", vmin=vrange[0], vmax=vrange[1], interpolation="nearest", aspect=aspect
    )
    outline = (project(label) > 0).astype("float32")
    if 0 < outline.sum() < outline.size:
        ax.contour(outline, levels=[0.5], colors=[OUTLINE], linewidths=0.5)
    scale_bar(ax, view.shape[1], zooms[0], view.shape[0])
    ax.set_title(title + (f" (z x{stretch})" if stretch > 1 else ""), fontsize=7)
    ax.set_axis_off()


def signed_extreme(diff: np.ndarray, axis: int) -> np.ndarray:
    """Along ``axis``, the value of largest magnitude (with its sign): a projection of a
    difference volume that shows every change, gains and losses alike."""
    import numpy as np

    index = np.expand_dims(np.abs(diff).argmax(axis=axis), axis)
    return np.take_along_axis(diff, index, axis=axis).squeeze(axis)


def difference_view(clean: np.ndarray, drifted: np.ndarray, side: bool) -> np.ndarray | None:
    """drifted - clean, projected as the row is (:func:`signed_extreme` along z, or along
    y for a side view) and oriented like :func:`mip` / :func:`side_mip`; ``None`` where
    the grids differ (nothing voxel-to-voxel to subtract)."""
    import numpy as np

    if clean.shape != drifted.shape:
        return None
    diff = drifted.astype(np.float32) - clean.astype(np.float32)
    return signed_extreme(diff, 1 if side else 2).T


def _difference_panel(ax, view, limit: float, title: str, aspect: float, um_per_px: float):
    """``view`` in a diverging map over the row's shared symmetric range ``±limit``."""
    if view is None or not view.any():
        ax.text(
            0.5,
            0.5,
            "other grid:\nno voxel difference" if view is None else "no voxel changed",
            ha="center",
            va="center",
            fontsize=6,
            transform=ax.transAxes,
        )
    else:
        ax.imshow(
            view, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest", aspect=aspect
        )
        scale_bar(ax, view.shape[1], um_per_px, view.shape[0], colour="k")
    ax.set_title(title, fontsize=7)
    ax.set_axis_off()


def _figure_text(summary: dict[str, Any], kind: str, entries: Sequence[dict[str, Any]]) -> str:
    """``"<figure> = <mean over entries>"``: the kind's primary figure (from the manifest)."""
    name = summary.get(kind, {}).get("figure", "")
    values = [e["verification"].get(name) for e in entries]
    values = [abs(v) for v in values if v is not None]
    if not name or not values:
        return name
    import textwrap

    label = textwrap.fill(name.replace("_", " "), 30)
    return f"{label} = {sum(values) / len(values):.3g}"


def _prevalence_panel(ax, pool: dict[str, float], chosen: Sequence[str], title: str) -> None:
    """The pool's vessel fractions ranked; the set's members highlighted."""
    ranked = sorted(pool, key=lambda v: (pool[v], v))
    ax.scatter(range(len(ranked)), [100 * pool[v] for v in ranked], s=4, color="0.6")
    picked = [i for i, v in enumerate(ranked) if v in set(chosen)]
    ax.scatter(picked, [100 * pool[ranked[i]] for i in picked], s=10, color=OUTLINE)
    ax.set_title(title, fontsize=7)
    ax.set_xlabel("clean volumes, ranked", fontsize=6)
    ax.set_ylabel("vessel fraction (%)", fontsize=6)
    ax.tick_params(labelsize=5)


def gallery_rows(
    manifest: dict[str, Any], volume: str | None = None
) -> tuple[str, list[tuple[str, str | None, list[tuple[dict[str, Any], str]]]]]:
    """The drift gallery's plan: ``(volume, [(kind, clean volume or None, [(entry, title)])])``.

    One row per kind of the manifest, sorted: per-volume kinds show ``volume`` (default:
    the first drift volume) at each level; ``gradual`` its batches (one volume each, the
    row's clean panel is the first batch's volume); set kinds (``None``) their sets.
    Titles carry the kind's primary figure from the manifest summary.
    """
    variants = manifest.get("variants", [])
    sets = manifest.get("sets", [])
    summary = manifest.get("summary", {})
    volume = volume or sorted({v["volume"] for v in variants if v["drift_type"] != "gradual"})[0]
    rows = []
    for kind in sorted({v["drift_type"] for v in [*variants, *sets]}):
        members = [e for e in sets if e["drift_type"] == kind]
        anchor = None
        if not members:
            members = [v for v in variants if v["drift_type"] == kind]
            if kind != "gradual":
                members = [v for v in members if v["volume"] == volume]
            members = sorted(members, key=lambda e: (e["level"], e["volume"]))
            anchor = members[0]["volume"] if kind == "gradual" else volume
        titled = []
        for entry in sorted(members, key=lambda e: e["level"]):
            step = (
                f"batch {entry['level']} {entry['volume']}"
                if kind == "gradual"
                else (f"L{entry['level']}")
            )
            titled.append((entry, f"{kind} {step}\n{_figure_text(summary, kind, [entry])}"))
        rows.append((kind, anchor, titled))
    return volume, rows


def _difference_limit(views) -> float:
    """The row's shared symmetric range: the 99.9th percentile of |difference| over every
    level's view (so the levels compare at one scale), 1 when nothing changed."""
    import numpy as np

    values = [np.abs(v[v != 0]) for v in views if v is not None and (v != 0).any()]
    if not values:
        return 1.0
    return float(max(np.percentile(np.concatenate(values), 99.9), 1e-6))


def drift_gallery(
    out_png: str | Path,
    manifest: dict[str, Any],
    clean_root: str | Path,
    drift_root: str | Path,
    volume: str | None = None,
) -> Path:
    """One row per drift kind in ``manifest`` (every kind, ``gradual`` and set kinds too).

    Per-volume kinds: the clean MIP of ``volume`` (default: the first drift volume), then
    each level, all in the clean MIP's display range (1st..99.7th percentile), so gain,
    bleaching and attenuation show as darker or brighter panels; the mask (each
    panel's own label file) as an outline; then one **difference panel** per level,
    drifted - clean (the mask for label kinds: red added, blue removed) projected by its
    value of largest magnitude, all levels of the row in one symmetric range, so kinds
    invisible by eye (intensity, noise, saturation...) show how much and where they act.
    Depth kinds are x-z side views (MIP along y), drawn at least :data:`MIN_SIDE_PX`
    pixels tall (depth exaggerated by a whole factor written in the title). Every image
    panel has a µm scale bar from its own file's spacing (so covariate's spacing change
    shows as a longer or shorter bar). ``gradual``: each batch is another volume, shown
    with its batch number and differenced against its own clean volume.
    ``prevalence``: the pool's vessel fractions, the chosen set highlighted. Every
    panel is titled with its kind's primary figure. Paths: ``clean_root`` holds the
    processed ``imagesTr``/``labelsTr``; ``drift_root`` the drift tree the manifest's
    paths are relative to.
    """
    import numpy as np

    from ..core.fsio import atomic_path

    plt = _pyplot()
    volume, rows = gallery_rows(manifest, volume)
    n_levels = max(len(members) for _, _, members in rows)
    n_cols = 1 + 2 * n_levels
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(GALLERY_CELL[0] * n_cols, GALLERY_CELL[1] * len(rows)),
        squeeze=False,
    )
    clean_root, drift_root = Path(clean_root), Path(drift_root)
    for row, (kind, anchor, members) in enumerate(rows):
        for ax in axes[row]:
            ax.set_axis_off()
        if anchor is None:  # a set kind: the pool's vessel fractions, the chosen set
            for ax in axes[row][: len(members) + 1]:
                ax.set_axis_on()
            pool = dict(members[0][0]["parameters"]["pool_fractions"])
            _prevalence_panel(axes[row][0], pool, [], f"{kind}: clean pool")
            for col, (entry, title) in enumerate(members, start=1):
                chosen = [v["volume"] for v in entry["volumes"]]
                _prevalence_panel(axes[row][col], pool, chosen, title)
            continue
        image = clean_root / "imagesTr" / f"{anchor}.nii.gz"
        label = clean_root / "labelsTr" / f"{anchor}.nii.gz"
        side = kind in DEPTH_KINDS
        clean_image, zooms = _load(image)
        stretch = depth_exaggeration(clean_image.shape, zooms) if side else 1
        clean = (side_mip if side else mip)(clean_image)
        vrange = tuple(float(x) for x in np.percentile(clean, [1.0, 99.7]))
        view = "x-z side view" if side else "z MIP"
        _gallery_panel(
            axes[row][0], image, label, vrange, f"{anchor} clean\n({kind}, {view})", side, stretch
        )
        role = "label" if members[0][0].get("target") == "label" else "image"
        views = []
        for col, (entry, title) in enumerate(members, start=1):
            files = entry["files"]
            drifted = drift_root / files[role]["drifted"]["path"]
            _gallery_panel(
                axes[row][col],
                drift_root / files["image"]["drifted"]["path"],
                drift_root / files["label"]["drifted"]["path"],
                vrange,
                title,
                side,
                stretch,
            )
            before = _load(clean_root / files[role]["clean"]["path"])[0]
            views.append(difference_view(before, _load(drifted)[0], side))
        limit = _difference_limit(views)
        aspect = (zooms[2] * stretch if side else zooms[1]) / zooms[0]
        for col, ((entry, _), diff) in enumerate(zip(members, views, strict=True)):
            step = f"batch {entry['level']}" if kind == "gradual" else f"L{entry['level']}"
            _difference_panel(
                axes[row][1 + n_levels + col],
                diff,
                limit,
                f"{kind} {step} - clean\n({role}, range +/-{limit:.3g})",
                aspect,
                zooms[0],
            )
    fig.suptitle(
        f"Drift variants of {volume}: MIPs (depth kinds as x-z side views), each row in its "
        "clean image's display range, mask outline in red; then drifted - clean per level "
        "(red up, blue down; one symmetric range per row)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=GALLERY_DPI, metadata={"Software": None})
    plt.close(fig)
    return Path(out_png)


def note_figure(out_png: str | Path, text: str) -> Path:
    """A small figure that only says ``text`` (e.g. why a gallery is empty)."""
    from ..core.fsio import atomic_path

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
    ax.set_axis_off()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return Path(out_png)


def load_reports(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Per-volume validation reports, sorted by volume id."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    return sorted(reports, key=lambda r: str(r.get("volume", "")))


def readable_log_ticks(axis) -> None:
    """Label a log axis at 1, 2 and 5 times powers of ten, in plain numbers, minor ticks
    unlabelled (matplotlib's default labels every minor tick of a short range: overlaps)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def dataset_figure(out_png: str | Path, validation_report: str | Path) -> Path:
    """Shapes, spacings, intensity percentiles and foreground fractions of every volume."""
    import numpy as np

    from ..core.fsio import atomic_path

    report = json.loads(Path(validation_report).read_text())
    volumes = report["volumes"]
    ids = sorted(volumes)
    valid = set(report["valid"])
    colours = ["tab:blue" if v in valid else "tab:red" for v in ids]

    def column(key, index=None):
        values = []
        for v in ids:
            value = volumes[v].get(key)
            if index is not None:
                value = value[index] if value else None
            values.append(np.nan if value is None else float(value))
        return np.array(values)

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0][0]
    ax.scatter(column("shape", 0), column("shape", 2), c=colours, s=18)
    ax.set_xlabel("X = Y (voxels)")
    ax.set_ylabel("Z (slices)")
    ax.set_title("Shapes (red: quarantined)")
    ax = axes[0][1]
    unit = volumes[ids[0]]["units"]["report_units"]
    ax.scatter(column("spacing", 0), column("spacing", 2), c=colours, s=18)
    ax.set_xscale("log")
    readable_log_ticks(ax.xaxis)
    ax.set_xlabel(f"in-plane spacing ({unit}, log scale)")
    ax.set_ylabel(f"z spacing ({unit})")
    ax.set_title("Voxel sizes")
    ax = axes[1][0]
    x = np.arange(len(ids))
    low = [(volumes[v].get("intensity") or {}).get("p1") for v in ids]
    mid = [(volumes[v].get("intensity") or {}).get("p50") for v in ids]
    high = [(volumes[v].get("intensity") or {}).get("p99") for v in ids]
    as_float = [
        np.array([np.nan if y is None else y for y in seq], float) for seq in (low, mid, high)
    ]
    ax.vlines(x, as_float[0], as_float[2], colors=colours, lw=2)
    ax.scatter(x, as_float[1], c="k", s=8, zorder=3)
    ax.set_xticks(
        x[:: max(1, len(x) // 14)],
        [ids[i] for i in x[:: max(1, len(x) // 14)]],
        rotation=60,
        fontsize=7,
    )
    ax.set_ylabel("image intensity p1 / p50 / p99")
    ax.set_title("Intensity distribution per volume")
    ax = axes[1][1]
    ax.bar(x, 100 * column("foreground_fraction"), color=colours)
    ax.set_xticks(
        x[:: max(1, len(x) // 14)],
        [ids[i] for i in x[:: max(1, len(x) // 14)]],
        rotation=60,
        fontsize=7,
    )
    ax.set_ylabel("vessel voxels (%)")
    ax.set_title("Foreground fraction")
    fig.suptitle(f"{len(ids)} volumes, {len(valid)} valid", fontsize=11)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return Path(out_png)


def validation_table(out_html: str | Path, validation_report: str | Path) -> Path:
    """An HTML table: one row per volume, one column per check (pass / FAIL with reason)."""
    import html

    from ..core.fsio import write_bytes_atomic

    report = json.loads(Path(validation_report).read_text())
    volumes = report["volumes"]
    names: list[str] = []
    for v in sorted(volumes):
        for check in volumes[v]["checks"]:
            if check["name"] not in names:
                names.append(check["name"])
    rows = []
    for v in sorted(volumes):
        by_name: dict[str, list] = {}
        for check in volumes[v]["checks"]:
            by_name.setdefault(check["name"], []).append(check)
        cells = []
        for name in names:
            checks = by_name.get(name, [])
            failed = [c for c in checks if c["passed"] is False]
            if failed:
                text = "; ".join(f"{c['observed']} (expected {c['expected']})" for c in failed)
                cells.append(
                    f'<td style="background:#f8d0d0" title="{html.escape(text)}">FAIL: '
                    f"{html.escape(text)}</td>"
                )
            elif checks and all(c["passed"] is None for c in checks):
                cells.append("<td>skipped</td>")
            else:
                cells.append('<td style="background:#d8f0d8">pass</td>')
        shape = "x".join(map(str, volumes[v].get("shape") or []))
        rows.append(f"<tr><th>{html.escape(v)}</th><td>{shape}</td>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    page = (
        "<html><body><table border='1' cellspacing='0' cellpadding='3' "
        "style='font-family:sans-serif;font-size:12px'>"
        f"<tr><th>volume</th><th>shape</th>{head}</tr>{''.join(rows)}</table></body></html>\n"
    )
    return write_bytes_atomic(out_html, page.encode())


def volume_mip(out_png: str | Path, vol: str, before: str | Path, after: str | Path) -> Path:
    """The PNG of one volume: MIP before (renamed) and after (processed) resampling."""
    panels = [
        (
            "before resampling",
            Path(before) / "imagesTr" / f"{vol}.nii.gz",
            Path(before) / "labelsTr" / f"{vol}.nii.gz",
        ),
        (
            "after resampling",
            Path(after) / "imagesTr" / f"{vol}.nii.gz",
            Path(after) / "labelsTr" / f"{vol}.nii.gz",
        ),
    ]
    return mip_figure(out_png, panels, suptitle=vol)


def volume_mips(
    out_dir: str | Path,
    volumes: Sequence[str],
    before: str | Path,
    after: str | Path,
    threads: int = 1,
) -> list[Path]:
    """One PNG per volume (:func:`volume_mip`) in ``out_dir``, named ``<volume>.png``;
    ``threads`` worker processes draw them side by side (matplotlib is not thread-safe),
    each PNG the same bytes however many draw."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outs = [out_dir / f"{vol}.png" for vol in volumes]
    workers = max(1, min(int(threads), len(volumes)))
    if workers == 1:
        return [volume_mip(out, vol, before, after) for out, vol in zip(outs, volumes, strict=True)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers inherit the imports (a spawned one would import matplotlib again)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        n = len(volumes)
        return list(pool.map(volume_mip, outs, volumes, [before] * n, [after] * n))
