"""Drift variants: each type is detectable, ordered by severity, deterministic and recorded.

Image drifts run on one synthetic volume at mv68's grid (128 x 128 x 106, 0.994 x 0.994 x
2.0 um); topology runs on the full real mask of mv68 (512 x 512 x 106).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_MASK, require, tree_digest

from minivess_bundle import drift, metrics
from minivess_bundle.errors import DriftError
from minivess_bundle.fsio import sha256_file
from minivess_bundle.nifti import read_nifti

SEED = 20230301
SEVERITIES = [drift.LEVELS[level] for level in range(1, 6)]
IMAGE_TYPES = ("intensity", "noise", "resolution", "attenuation", "pmt")


@pytest.fixture(scope="module")
def synthetic():
    """One synthetic volume at mv68's grid: image (uint16), mask (uint8) and spacing."""
    from minivess_bundle.synthetic import generate_volume

    volume = generate_volume(7, "mv68", size_xy=128)
    return volume.image, volume.mask, volume.acquisition.spacing_um


def drifted_series(image, drift_type, **params):
    """(drifted, record) at the five named levels, seeds derived like the workflow's."""
    return [
        drift.apply_drift(
            image,
            drift_type,
            s,
            drift.derive_seed(SEED, "mv68", drift_type, s),
            return_record=True,
            **params,
        )
        for s in SEVERITIES
    ]


def strictly(values, direction):
    pairs = list(zip(values, values[1:], strict=False))
    return all(b > a for a, b in pairs) if direction == "up" else all(b < a for a, b in pairs)


# --- levels, seeds, identity -----------------------------------------------------------------


def test_levels_one_to_five_map_to_documented_severities():
    assert drift.LEVELS == {1: 0.2, 2: 0.4, 3: 0.6, 4: 0.8, 5: 1.0}
    assert [drift.noise_sigma_fraction(s) for s in SEVERITIES] == pytest.approx(
        [0.05, 0.0875, 0.125, 0.1625, 0.20]
    )
    with pytest.raises(DriftError, match="level 6"):
        drift.severity_for_level(6)


def test_derive_seed_is_a_pinned_function_of_seed_volume_type_and_severity():
    seed = drift.derive_seed(SEED, "mv68", "noise", 0.6)
    assert seed == drift.derive_seed(SEED, "mv68", "noise", 0.6000000001)  # 6 decimals
    assert seed == 2198804361944602  # stable across runs and machines: sha256, not hash()
    others = {
        drift.derive_seed(SEED + 1, "mv68", "noise", 0.6),
        drift.derive_seed(SEED, "mv67", "noise", 0.6),
        drift.derive_seed(SEED, "mv68", "intensity", 0.6),
        drift.derive_seed(SEED, "mv68", "noise", 0.8),
    }
    assert seed not in others and len(others) == 4
    assert 0 <= seed < 2**53


def test_severity_zero_is_byte_identical_for_every_type(synthetic):
    image, mask, spacing = synthetic
    for drift_type in [*IMAGE_TYPES, "covariate"]:
        out, record = drift.apply_drift(image, drift_type, 0.0, seed=1, return_record=True)
        assert out.dtype == image.dtype and out.tobytes() == image.tobytes(), drift_type
        assert out is not image and record["identity"] is True
        ks = metrics.ks_test(image, out)
        assert ks["statistic"] == 0.0 and ks["pvalue"] == 1.0
    out = drift.apply_drift(mask, "topology", 0.0, seed=1)
    assert out.dtype == np.uint8 and out.tobytes() == mask.tobytes()


def test_bad_type_severity_and_non_binary_mask_raise_drift_error(synthetic):
    image, _, _ = synthetic
    with pytest.raises(DriftError, match="drift: drift type 'blur' is not known"):
        drift.apply_drift(image, "blur")
    with pytest.raises(DriftError, match="severity 1.5 is out of range"):
        drift.apply_drift(image, "noise", 1.5)
    with pytest.raises(DriftError, match="topology drift needs a mask"):
        drift.apply_drift(image, "topology", 0.5, seed=1)


# --- image drifts ----------------------------------------------------------------------------


def test_intensity_above_severity_0_3_is_detected_by_ks_with_documented_gain(synthetic):
    image, _, _ = synthetic
    for severity in (0.31, 0.6, 1.0):
        out, record = drift.apply_drift(image, "intensity", severity, seed=3, return_record=True)
        figures = drift.verification_figures("intensity", image, out, record=record)
        assert out.dtype == np.uint16
        assert figures["ks_pvalue"] < 0.05
        assert record["parameters"]["gain"] == pytest.approx(1 + 0.3 * severity)
        assert figures["std_ratio"] == pytest.approx(1 + 0.3 * severity, rel=0.01)
        assert figures["mean_shift"] > 0
    darker = drift.apply_drift(image, "intensity", 1.0, seed=3, direction=-1)
    assert darker.mean() < 0.8 * image.mean()


def test_noise_is_detected_at_every_level_and_snr_falls_monotonically(synthetic):
    image, mask, _ = synthetic
    snrs = []
    for out, record in drifted_series(image, "noise"):
        figures = drift.verification_figures("noise", image, out, record=record, mask=mask)
        assert figures["ks_pvalue"] < 0.05
        params = record["parameters"]
        lo, hi = params["dynamic_range"]
        assert params["sigma"] == pytest.approx(params["sigma_fraction_of_range"] * (hi - lo))
        # On vessels well above the dark level (no clipping at 0) the added noise lies between
        # its Gaussian part and the total sigma it reaches at the bright end.
        bright = image > lo + 3 * params["sigma"]
        added = float(np.std(out[bright].astype(np.float64) - image[bright]))
        assert bright.sum() > 1000
        assert params["gaussian_sigma"] < added < params["sigma"]
        snrs.append(figures["snr_db_after"])
    assert strictly(snrs, "down")
    assert snrs[0] < metrics.snr_db(image, mask) - 3  # level 1 costs more than 3 dB


def test_resolution_lowers_high_frequency_energy_monotonically(synthetic):
    image, _, _ = synthetic
    ratios = []
    for out, record in drifted_series(image, "resolution"):
        figures = drift.verification_figures("resolution", image, out, record=record)
        assert out.shape == image.shape and out.dtype == np.uint16
        assert figures["ks_pvalue"] < 0.05
        ratios.append(figures["hf_energy_ratio"])
    assert ratios[0] < 0.8 and strictly(ratios, "down")


def test_attenuation_measured_length_change_matches_applied_and_grows_with_severity(synthetic):
    image, _, spacing = synthetic
    deepest = []
    for out, record in drifted_series(image, "attenuation", spacing=spacing):
        figures = drift.verification_figures("attenuation", image, out, record=record)
        applied = record["parameters"]["delta_inverse_length_per_um"]
        assert figures["measured_delta_inverse_length_per_um"] == pytest.approx(applied, rel=0.05)
        assert figures["ks_pvalue"] < 0.05
        # the surface slice keeps its brightness, the deep ones lose it
        assert np.array_equal(out[:, :, 0], image[:, :, 0])
        deepest.append(figures["slice_mean_ratio_deepest"])
    assert strictly(deepest, "down")
    assert record["parameters"]["attenuation_length_um_after"] == pytest.approx(250 / 4)


def test_pmt_fitted_slice_gain_follows_applied_ramp_and_grows_with_severity(synthetic):
    image, _, _ = synthetic
    last_gains, ks = [], []
    for out, record in drifted_series(image, "pmt"):
        figures = drift.verification_figures("pmt", image, out, record=record)
        applied = record["parameters"]["slice_gains"]
        assert applied[0] == 1.0
        assert figures["fitted_gain_first_slice"] == pytest.approx(1.0, abs=0.01)
        assert figures["fitted_gain_last_slice"] == pytest.approx(applied[-1], abs=0.02)
        last_gains.append(figures["fitted_gain_last_slice"])
        ks.append(figures["ks_statistic"])
        assert figures["ks_pvalue"] < 0.05
    assert strictly(last_gains, "up") and strictly(ks, "up")


def test_gradual_batches_have_linear_severities_and_monotonic_statistics(synthetic):
    image, mask, _ = synthetic
    outputs, record = drift.apply_drift(
        image, "gradual", 1.0, seed=SEED, base="noise", n_batches=5, return_record=True
    )
    assert record["severities"] == pytest.approx(SEVERITIES)
    assert [b["severity"] for b in record["batches"]] == pytest.approx(SEVERITIES)
    snrs = [metrics.snr_db(out, mask) for out in outputs]
    assert strictly(snrs, "down")

    outputs = drift.apply_drift(image, "gradual", 0.5, seed=SEED, base="intensity", n_batches=4)
    ks = [metrics.ks_test(image, out)["statistic"] for out in outputs]
    assert strictly(ks, "up")


def test_torch_tensor_in_gives_torch_tensor_out_with_numpy_bytes(synthetic):
    torch = require("torch")
    image, _, _ = synthetic
    expected = drift.apply_drift(image, "noise", 0.6, seed=5)
    out = drift.apply_drift(torch.from_numpy(image), "noise", 0.6, seed=5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint16
    assert out.numpy().tobytes() == expected.tobytes()
    floats = torch.from_numpy(image.astype(np.float32))
    assert drift.apply_drift(floats, "intensity", 0.0).numpy().tobytes() == floats.numpy().tobytes()


def test_numpy_drift_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "from minivess_bundle.drift import apply_drift\n"
        "x = np.arange(4 * 4 * 4, dtype=np.uint16).reshape(4, 4, 4)\n"
        "apply_drift(x, 'noise', 0.5, seed=1)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- topology on the real mask ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_topology_series():
    """The real mv68 mask cut at levels 1..5, with its topology figures (full 512 x 512 x 106)."""
    mask = np.asarray(read_nifti(REAL_MASK).dataobj)
    skeleton = metrics.skeleton(mask)
    clean = metrics.topology_summary(mask)
    series = []
    for severity in SEVERITIES:
        seed = drift.derive_seed(SEED, "mv68", "topology", severity)
        out, record = drift.TopologyDrift(severity, seed)(mask, skeleton=skeleton)
        figures = drift.verification_figures(
            "topology", mask, out, record=record, clean_skeleton=skeleton, clean_topology=clean
        )
        series.append((out, record, figures))
    return mask, series


def test_topology_cuts_on_real_mask_raise_betti0_and_lower_cldice_monotonically(
    real_topology_series,
):
    mask, series = real_topology_series
    betti0 = [figures["betti0_after"] for _, _, figures in series]
    cldice = [figures["cldice"] for _, _, figures in series]
    assert series[0][2]["betti0_before"] == 231
    assert betti0[0] > 231 and strictly(betti0, "up")
    assert cldice[0] < 1.0 and strictly(cldice, "down")
    for out, record, figures in series:
        assert out.dtype == np.uint8 and set(np.unique(out).tolist()) <= {0, 1}
        assert not (out.astype(bool) & ~mask.astype(bool)).any()  # cuts only remove voxels
        assert figures["betti1_after"] == (
            figures["betti0_after"] + figures["betti2_after"] - figures["euler_after"]
        )
        assert record["parameters"]["cuts"] == round(
            record["parameters"]["cuts_per_1000_skeleton_voxels"]
            * record["parameters"]["skeleton_voxels"]
            / 1000
        )


def test_topology_erode_breaks_and_dilate_merges_vessels(synthetic):
    _, mask, _ = synthetic
    clean = metrics.betti_numbers(mask)
    eroded = drift.apply_drift(mask, "topology", 1.0, seed=1, mode="erode")
    dilated = drift.apply_drift(mask, "topology", 1.0, seed=1, mode="dilate")
    assert eroded.sum() < mask.sum() < dilated.sum()
    assert metrics.betti_numbers(eroded)["betti0"] > clean["betti0"]
    assert metrics.betti_numbers(dilated)["betti0"] < clean["betti0"]
    assert metrics.cldice(eroded, mask) < 0.9 and metrics.cldice(dilated, mask) < 1.0


# --- variants on disk, manifest ----------------------------------------------------------------


def test_covariate_variant_changes_header_spacing_only_and_validate_flags_it(tmp_path):
    from minivess_bundle.synthetic import write_synthetic_volume
    from minivess_bundle.validate import validate_volume

    clean = write_synthetic_volume(tmp_path / "clean", "mv68", seed=7, size_xy=64)
    out = {k: tmp_path / "drift" / "covariate" / "2" / f"{k}.nii.gz" for k in ("image", "label")}
    entry = drift.generate_drift_variant(
        "mv68", clean["image"], clean["label"], out["image"], out["label"], "covariate", level=2
    )
    for role in ("image", "label"):
        before, after = read_nifti(clean[role]), read_nifti(out[role])
        assert np.asarray(after.dataobj).tobytes() == np.asarray(before.dataobj).tobytes()
        assert np.allclose(after.header.get_zooms(), np.array(before.header.get_zooms()) * 1.2)
        assert np.allclose(after.affine[:3, :3], before.affine[:3, :3] * 1.2)
        assert entry["files"][role]["modified"] is True
    figures = entry["verification"]
    assert figures["voxels_identical"] is True
    assert figures["spacing_relative_delta"] == pytest.approx([0.2, 0.2, 0.2])
    assert entry["expected_signal"] == "schema"

    def json_check(image, label):
        report = validate_volume("mv68", image, label, clean["metadata"])
        return next(c for c in report["checks"] if c["name"] == "json_spacing_agrees")

    assert json_check(clean["image"], clean["label"])["passed"] is True
    assert json_check(out["image"], out["label"])["passed"] is False


@pytest.fixture
def drift_config():
    return {
        "global_seed": SEED,
        "levels": [1, 5],
        "gradual": {"base": "intensity", "n_batches": 3},
        "reference_ids": ["mv10", "mv11"],
    }


def test_drifted_dataset_is_byte_reproducible_and_manifest_hashes_match_files(
    tiny_staging, tmp_path, drift_config
):
    first = drift.generate_drifted_dataset(tiny_staging, tmp_path / "a", drift_config)
    second = drift.generate_drifted_dataset(tiny_staging, tmp_path / "b", drift_config)
    digest = tree_digest(tmp_path / "a")
    assert digest == tree_digest(tmp_path / "b")
    assert first.to_json() == second.to_json()

    manifest = json.loads((tmp_path / "a" / "drift_manifest.json").read_text())
    variants = manifest["variants"]
    assert len(variants) == 7 * 2 * 3 + 3  # 7 types x 2 levels x 3 volumes + 3 gradual
    for entry in variants:
        for role in ("image", "label"):
            files = entry["files"][role]
            assert digest[files["drifted"]["path"]] == files["drifted"]["sha256"]
            assert sha256_file(tiny_staging / files["clean"]["path"]) == files["clean"]["sha256"]
        assert entry["files"]["image" if entry["target"] != "label" else "label"]["modified"]
        assert entry["reference_split_ids"] == ["mv10", "mv11"]
    gradual = sorted((e["level"], e["severity"]) for e in variants if e["drift_type"] == "gradual")
    assert [level for level, _ in gradual] == [1, 2, 3]
    assert [severity for _, severity in gradual] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert manifest["summary"]["intensity"]["monotonic"] is True
    assert manifest["summary"]["gradual"]["monotonic"] is True

    dataset = json.loads((tmp_path / "a" / "noise" / "5" / "dataset.json").read_text())
    assert dataset["numTraining"] == 3
    assert dataset["training"][0] == {
        "image": "./imagesTr/mv01.nii.gz",
        "label": "./labelsTr/mv01.nii.gz",
    }
    assert not any(p.startswith("imagesTr/") for p in digest)  # never inside a clean imagesTr


def test_one_variant_alone_gives_the_same_bytes_as_in_the_full_run(
    tiny_staging, tmp_path, drift_config
):
    drift.generate_drifted_dataset(tiny_staging, tmp_path / "full", drift_config)
    out_image, out_label = tmp_path / "alone" / "image.nii.gz", tmp_path / "alone" / "label.nii.gz"
    entry = drift.generate_drift_variant(
        "mv39",
        tiny_staging / "raw" / "mv39.nii.gz",
        tiny_staging / "seg" / "mv39_y.nii.gz",
        out_image,
        out_label,
        "noise",
        level=5,
        global_seed=SEED,
    )
    full = tmp_path / "full" / "noise" / "5"
    assert out_image.read_bytes() == (full / "imagesTr" / "mv39.nii.gz").read_bytes()
    assert out_label.read_bytes() == (full / "labelsTr" / "mv39.nii.gz").read_bytes()
    assert entry["seed"] == drift.derive_seed(SEED, "mv39", "noise", 1.0)


def test_manifest_validates_against_its_schema_round_trips_and_rejects_tampering(
    tiny_staging, tmp_path, drift_config
):
    import jsonschema

    drift_config.update(types=["intensity", "topology"], levels=[3])
    manifest = drift.generate_drifted_dataset(tiny_staging, tmp_path / "d", drift_config)
    data = json.loads(manifest.to_json())
    jsonschema.Draft202012Validator.check_schema(drift.DRIFT_MANIFEST_SCHEMA)
    jsonschema.validate(data, drift.DRIFT_MANIFEST_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert drift.DriftManifest.from_json(manifest.to_json()) == manifest
    assert drift.DriftManifest.read(tmp_path / "d" / "drift_manifest.json") == manifest

    entry = data["variants"][0]
    assert set(entry) >= {"volume", "drift_type", "severity", "level", "seed", "parameters"}
    assert entry["verification"]["ks_pvalue"] is not None
    data["variants"][0]["files"]["image"]["drifted"]["sha256"] = "not-a-hash"
    with pytest.raises(DriftError, match="variants/0/files/image/drifted/sha256"):
        drift.validate_manifest(data)


def test_merge_manifest_entries_joins_job_entries_and_refuses_duplicates(
    tiny_staging, tmp_path, drift_config
):
    drift_config.update(types=["noise"], levels=[1, 2])
    manifest = drift.generate_drifted_dataset(tiny_staging, tmp_path / "d", drift_config)
    paths = []
    for i, entry in enumerate(reversed(manifest.variants)):  # job order does not matter
        paths.append(tmp_path / "entries" / f"{i}.json")
        paths[-1].parent.mkdir(exist_ok=True)
        paths[-1].write_text(json.dumps(entry))
    merged = drift.merge_manifest_entries(paths)
    assert merged == manifest.to_dict()
    with pytest.raises(DriftError, match="appears twice"):
        drift.merge_manifest_entries([*paths, paths[0]])


def test_topology_variant_rewrites_only_the_label(tiny_staging, tmp_path):
    out = tmp_path / "v"
    entry = drift.generate_drift_variant(
        "mv01",
        tiny_staging / "raw" / "mv01.nii.gz",
        tiny_staging / "seg" / "mv01_y.nii.gz",
        out / "imagesTr" / "mv01.nii.gz",
        out / "labelsTr" / "mv01.nii.gz",
        "topology",
        level=5,
        global_seed=SEED,
    )
    assert entry["files"]["image"]["modified"] is False
    assert entry["files"]["label"]["modified"] is True
    assert entry["expected_signal"] == "topology"
    label = read_nifti(out / "labelsTr" / "mv01.nii.gz")
    assert label.get_data_dtype() == np.uint8
    assert b"SYNTHETIC" in bytes(label.header["descrip"])  # the synthetic label survives
    assert entry["verification"]["cldice"] < 1.0
    assert Path(entry["files"]["label"]["drifted"]["path"]).name == "mv01.nii.gz"


def _noise_unslabbed(array, sigma_fraction, seed):
    """The noise transform as first written (one full-volume draw of each kind)."""
    import math

    rng = np.random.default_rng(seed)
    lo, hi = metrics.robust_range(array)
    span = max(hi - lo, 1.0)
    sigma = sigma_fraction * span
    sigma_poisson, sigma_gauss = sigma * math.sqrt(0.5), sigma * math.sqrt(0.5)
    gain = sigma_poisson**2 / span
    values = array.astype(np.float32) - np.float32(lo)
    above = np.maximum(values, 0.0)
    below = values - above
    counts = rng.poisson(above.astype(np.float64) / gain)
    values = (counts * gain).astype(np.float32) + below
    values += rng.standard_normal(values.shape, dtype=np.float32) * np.float32(sigma_gauss)
    values += np.float32(lo)
    return np.clip(np.rint(values), 0, 65535).astype(array.dtype)


@pytest.mark.parametrize("order", ["F", "C"])
def test_slabbed_noise_draw_gives_the_bytes_of_one_full_volume_draw(synthetic, order):
    image = np.asarray(synthetic[0][: drift.NOISE_SLAB * 3 + 5], order=order)  # ragged last slab
    out, record = drift.NoiseDrift(0.8, seed=11)(image)
    expected = _noise_unslabbed(image, record["parameters"]["sigma_fraction_of_range"], 11)
    assert out.dtype == image.dtype
    assert np.array_equal(out, expected)


def test_resolution_in_place_buffers_give_the_fresh_array_result(synthetic):
    from scipy import ndimage

    image = synthetic[0][:40, :36, :12]
    out, record = drift.ResolutionDrift(0.6, seed=1)(image)
    small = record["parameters"]["downsampled_shape"]
    sigma = record["parameters"]["antialias_sigma_voxels"]
    values = ndimage.gaussian_filter(image.astype(np.float32), sigma=sigma, mode="nearest")
    zoom = dict(order=1, grid_mode=True, mode="nearest")
    down = ndimage.zoom(values, [m / n for n, m in zip(image.shape, small, strict=True)], **zoom)
    up = ndimage.zoom(down, [n / m for n, m in zip(image.shape, down.shape, strict=True)], **zoom)
    assert list(down.shape) == small
    assert np.array_equal(out, np.clip(np.rint(up), 0, 65535).astype(np.uint16))
