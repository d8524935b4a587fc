"""Property suite: every drift kind holds its guarantees on volumes the project did not make.

Each example is a foreign volume (tests/foreign_volumes.py: another vessel and noise model
than the synthetic source) over the issue's ranges: XY 0.31–1.23 µm, Z 0.5–4.97 µm, 5–110
slices down to 16×16×5, foreground 0.05–35 %, noise sd 2–60 counts, vessels only in the top
or bottom half (or anywhere). Each kind's levels 1..5 are made as the build makes them
(:func:`generate_drift_levels` on NIfTI files written as the authors write them) and read
back from the files. Per volume, not on a mean over volumes:

- the primary figure is strictly monotone over the levels and changed at every level
  (:func:`minivess_bundle.drift.manifest.summarise` on that volume's entries alone);
- the drifted files keep shape and dtype, the mask stays {0, 1}, the file the kind does not
  target is byte-identical, and an image kind pins no more voxels at the dtype's bounds
  than the clean volume had plus 1 % (no wrap-around or overflow);
- the domain guard holds: an image kind refuses the mask, a label kind refuses the image.

Under CI the hypothesis profile ``ci`` (tests/conftest.py) is derandomised: the same examples
every run. A falsifying example is printed as a ``ForeignSpec``; rebuild it with
``foreign_volumes.pair_from_spec(spec)``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from foreign_volumes import ForeignSpec, pair_from_spec, save_authors_nifti, specs

from minivess_bundle.core.errors import DriftError
from minivess_bundle.drift.kinds import TRANSFORMS, make_drift
from minivess_bundle.drift.manifest import summarise
from minivess_bundle.drift.plan import LEVELLED_KINDS, plan_jobs
from minivess_bundle.drift.variant import VariantFiles, VariantSpec, generate_drift_levels

require("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

LEVELS = (1, 2, 3, 4, 5)
#: Examples per kind: bounded so the whole suite stays within a few minutes on 2 cores.
EXAMPLES = 10
#: The largest volume drawn: small, so 15 kinds × 5 levels × EXAMPLES fit the budget.
MAX_XY, MAX_Z = 40, 48


def _kind_params(kind: str) -> dict:
    """The parameters the plan gives ``kind`` by default (compound: its component kinds)."""
    jobs = plan_jobs(["mv01"], {"types": [kind], "volumes": ["mv01"], "levels": [1]})
    return dict(jobs[0].params)


def build_levels(spec: ForeignSpec, kind: str, root: Path):
    """(clean image, clean label, entries, drifted (image, label) per level) from files."""
    import nibabel as nib

    image, label, spacing = pair_from_spec(spec)
    clean = {"image": root / "clean" / "image.nii.gz", "label": root / "clean" / "label.nii.gz"}
    save_authors_nifti(image, spacing, 1000.0, clean["image"])
    save_authors_nifti(label, spacing, 1.0, clean["label"])
    files = [
        VariantFiles(
            clean["image"],
            clean["label"],
            root / f"L{level}" / "image.nii.gz",
            root / f"L{level}" / "label.nii.gz",
        )
        for level in LEVELS
    ]
    for f in files:
        Path(f.out_image).parent.mkdir(parents=True, exist_ok=True)
    variant = VariantSpec("mv01", kind, 1, global_seed=spec.seed, params=_kind_params(kind))
    entries = generate_drift_levels(variant, list(LEVELS), files)
    drifted = [
        (np.asarray(nib.load(f.out_image).dataobj), np.asarray(nib.load(f.out_label).dataobj))
        for f in files
    ]
    return image, label, entries, drifted


def _at_bounds(array: np.ndarray) -> float:
    info = np.iinfo(array.dtype)
    return float(np.count_nonzero((array == info.min) | (array == info.max))) / array.size


def plan_skips(spec: ForeignSpec, kind: str) -> str | None:
    """Why the build's plan would not make ``kind`` on this volume (``None``: it would):
    the kind cannot act there (drift.plan.skip_reason), and the manifest lists it."""
    from minivess_bundle.drift.plan import VolumeFacts, skip_reason
    from minivess_bundle.validate.stats import intensity_stats

    image, label, _ = pair_from_spec(spec)
    stats = intensity_stats(image)
    facts = VolumeFacts(image.shape, int(np.count_nonzero(label)), stats["p99"] - stats["p1"])
    return skip_reason(kind, facts, {"types": [kind], "levels": list(LEVELS)})


def check_kind_on_volume(spec: ForeignSpec, kind: str) -> None:
    if plan_skips(spec, kind):  # never built: the manifest lists it under skipped
        return
    with tempfile.TemporaryDirectory() as tmp:
        image, label, entries, drifted = build_levels(spec, kind, Path(tmp))
    row = summarise(entries)[kind]
    assert row["monotonic"] and row["nonzero"], (
        f"{kind}: {row['figure']} by level {row['by_level']} is not a strictly "
        f"{row['direction']}, non-zero figure on this volume"
    )
    target = TRANSFORMS[kind].target
    for level, (out_image, out_label) in zip(LEVELS, drifted, strict=True):
        assert out_image.shape == image.shape and out_label.shape == label.shape, level
        assert out_image.dtype == np.uint16 and out_label.dtype == np.uint8, level
        assert set(np.unique(out_label)) <= {0, 1}, level
        if target == "image":
            assert np.array_equal(out_label, label), f"{kind} level {level} changed the mask"
            assert not np.array_equal(out_image, image), f"{kind} level {level} changed nothing"
            assert _at_bounds(out_image) <= _at_bounds(image) + 0.01, (
                f"{kind} level {level}: {_at_bounds(out_image):.3%} of voxels at the uint16 "
                f"bounds (clean {_at_bounds(image):.3%})"
            )
        elif target == "label":
            assert np.array_equal(out_image, image), f"{kind} level {level} changed the image"
            assert not np.array_equal(out_label, label), f"{kind} level {level} changed nothing"
        else:  # header kinds keep every voxel; the change is in the spacing
            assert np.array_equal(out_image, image) and np.array_equal(out_label, label)


@pytest.mark.parametrize("kind", LEVELLED_KINDS)
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(max_xy=MAX_XY, max_z=MAX_Z))
def test_every_level_is_monotone_changed_and_in_range_on_each_foreign_volume(kind, spec):
    check_kind_on_volume(spec, kind)


@pytest.mark.parametrize("kind", [k for k in LEVELLED_KINDS if TRANSFORMS[k].target != "header"])
@settings(max_examples=3)
@given(spec=specs(max_xy=24, max_z=12))
def test_domain_guard_refuses_the_other_file_on_any_volume(kind, spec):
    image, label, _ = pair_from_spec(spec)
    wrong = label if TRANSFORMS[kind].target == "image" else image
    params = _kind_params(kind)
    for level in (1, 5):
        drift = make_drift(kind, level / 5, spec.seed, **params)
        with pytest.raises(DriftError, match=kind):
            drift(wrong, mask=label, spacing=spec.spacing_um, volume="mv01")
