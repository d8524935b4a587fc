"""Verification metrics: clDice, Betti numbers, KS, SNR and high-frequency energy on known cases."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REAL_MASK

from minivess_bundle.core import metrics


def tube(shape=(32, 32, 16), centre=(16, 16), radius=3, axis=0) -> np.ndarray:
    """A straight solid cylinder along ``axis`` (0 = x) through the whole volume."""
    grid = np.indices(shape)
    others = [a for a in range(3) if a != axis]
    d2 = (grid[others[0]] - centre[0]) ** 2 + (grid[others[1]] - centre[1]) ** 2
    return (d2 <= radius**2).astype(np.uint8)


def test_cldice_of_identical_masks_is_one():
    mask = tube()
    assert metrics.cldice(mask, mask) == 1.0


def test_cldice_of_disjoint_masks_is_zero():
    a = tube(centre=(8, 8), radius=2)
    b = tube(centre=(24, 8), radius=2)
    assert not (a & b).any()
    assert metrics.cldice(a, b) == 0.0


def test_cldice_empty_guards_two_empty_agree_and_one_empty_scores_zero():
    empty = np.zeros((8, 8, 8), np.uint8)
    assert metrics.cldice(empty, empty) == 1.0
    assert metrics.cldice(empty, tube((8, 8, 8), (4, 4), 1)) == 0.0
    assert metrics.cldice(tube((8, 8, 8), (4, 4), 1), empty) == 0.0


def test_cldice_single_voxel_mask_has_its_own_skeleton():
    dot = np.zeros((5, 5, 5), np.uint8)
    dot[2, 2, 2] = 1
    assert metrics.skeleton(dot).sum() == 1
    assert metrics.cldice(dot, dot) == 1.0


def test_cldice_is_symmetric_and_drops_when_a_vessel_is_cut():
    clean = tube(radius=3)
    cut = clean.copy()
    cut[12:20] = 0  # an 8-voxel gap in a 32-voxel vessel
    score = metrics.cldice(cut, clean)
    assert score == pytest.approx(metrics.cldice(clean, cut))
    # Tprec = 1 (the cut skeleton lies in the clean vessel), Tsens ~ 24/32 of the centreline.
    assert 0.75 < score < 0.92


def test_betti_numbers_of_hand_made_shapes():
    ball = np.zeros((9, 9, 9), np.uint8)
    ball[2:7, 2:7, 2:7] = 1
    assert metrics.betti_numbers(ball) == {"betti0": 1, "betti1": 0, "betti2": 0, "euler": 1}

    shell = ball.copy()
    shell[4, 4, 4] = 0  # one enclosed cavity
    assert metrics.betti_numbers(shell) == {"betti0": 1, "betti1": 0, "betti2": 1, "euler": 2}

    ring = np.zeros((9, 9, 5), np.uint8)
    ring[1:8, 1:8, 2] = 1
    ring[3:6, 3:6, 2] = 0  # a flat ring: one loop
    assert metrics.betti_numbers(ring) == {"betti0": 1, "betti1": 1, "betti2": 0, "euler": 0}

    two_rings = np.concatenate([ring, ring], axis=0)
    assert metrics.betti_numbers(two_rings)["betti1"] == 2


def test_betti_foreground_is_26_connected_and_border_pockets_are_not_cavities():
    corner = np.zeros((4, 4, 4), np.uint8)
    corner[1, 1, 1] = corner[2, 2, 2] = 1  # touch at a corner only
    assert metrics.betti_numbers(corner)["betti0"] == 1

    cup = np.zeros((7, 7, 7), np.uint8)
    cup[:, :, :] = 1
    cup[3, 3, 3:] = 0  # a pocket open to the volume's face: outside, not a cavity
    assert metrics.betti_numbers(cup)["betti2"] == 0
    cup[3, 3, 6] = 1  # sealed: now a cavity
    assert metrics.betti_numbers(cup)["betti2"] == 1


def test_betti_numbers_of_real_mask_agree_with_published_component_count():
    from minivess_bundle.core.nifti import read_nifti

    mask = np.asarray(read_nifti(REAL_MASK).dataobj)
    betti = metrics.betti_numbers(mask)
    assert betti["betti0"] == 231  # tests/data/README.md
    assert betti["betti1"] == betti["betti0"] + betti["betti2"] - betti["euler"]
    assert betti["betti1"] > betti["betti0"]  # a vascular mesh: more loops than pieces


def test_ks_test_of_identical_arrays_is_statistic_zero_pvalue_one():
    x = np.random.default_rng(0).integers(0, 4096, size=(64, 64, 64), dtype=np.uint16)
    result = metrics.ks_test(x, x.copy())
    assert result == {"statistic": 0.0, "pvalue": 1.0, "n": metrics.KS_MAX_SAMPLES}


def test_ks_test_detects_a_small_shift_and_not_a_resample():
    rng = np.random.default_rng(1)
    a = rng.normal(100, 10, size=(40, 40, 40))
    assert metrics.ks_test(a, a + 1.0)["pvalue"] < 0.05
    b = rng.normal(100, 10, size=(40, 40, 40))
    assert metrics.ks_test(a, b)["pvalue"] > 0.01


def test_noise_sigma_recovers_known_gaussian_sigma_on_a_smooth_image():
    rng = np.random.default_rng(2)
    x, y, z = np.meshgrid(*(np.linspace(0, 1, n) for n in (96, 96, 16)), indexing="ij")
    smooth = 500 + 300 * np.sin(3 * x) * np.cos(2 * y) + 50 * z
    noisy = smooth + rng.normal(0, 7.0, smooth.shape)
    assert metrics.noise_sigma(noisy) == pytest.approx(7.0, rel=0.05)


def test_snr_falls_as_gaussian_noise_grows():
    rng = np.random.default_rng(3)
    clean = tube((48, 48, 16), (24, 8), 4).astype(np.float32) * 400 + 100
    mask = clean > 300
    snrs = [metrics.snr_db(clean + rng.normal(0, s, clean.shape), mask) for s in (5, 10, 20, 40)]
    assert all(b < a for a, b in zip(snrs, snrs[1:], strict=False))
    assert snrs[0] - snrs[1] == pytest.approx(20 * np.log10(2), abs=0.5)
    assert metrics.snr_db(clean, mask) == float("inf")


def test_high_frequency_fraction_white_noise_vs_smooth_image():
    from scipy import ndimage

    noise = np.random.default_rng(4).normal(size=(48, 48, 48))
    # White noise spreads energy evenly: the share outside the half-Nyquist sphere is
    # 1 - (4/3 pi 0.5^3) / 2^3 = 0.9346 of the normalised frequency cube.
    assert metrics.high_frequency_energy_fraction(noise) == pytest.approx(0.9346, abs=0.01)
    smooth = ndimage.gaussian_filter(noise, 3)
    assert metrics.high_frequency_energy_fraction(smooth) < 0.01
    assert metrics.high_frequency_energy_fraction(np.ones((8, 8, 8))) == 0.0


# --- the streaming / scipy-free implementations equal the textbook ones ----------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int16, np.int8])
@pytest.mark.parametrize("size", [1, 2, 7, 1001, 300_000])
def test_percentiles_from_histogram_equal_numpy_exactly(dtype, size):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(size)
    # Signed spans kept below the dtype's max: numpy subtracts the order statistics in
    # the input dtype and wraps around beyond it (we do not).
    low, high = (info.min // 2, info.max // 2) if info.min else (0, int(info.max) + 1)
    data = rng.integers(low, high, size=size).astype(dtype)
    data[: size // 3] = data[0]  # ties, as in a dark background
    q = [0.0, 0.1, 1.0, 33.3, 50.0, 99.0, 99.9, 100.0]
    assert metrics.percentiles(data, q) == [float(v) for v in np.percentile(data, q)]


def test_robust_range_of_an_f_ordered_volume_equals_numpy():
    volume = np.asfortranarray(
        np.random.default_rng(4).integers(0, 4096, size=(40, 30, 9), dtype=np.uint16)
    )
    assert metrics.robust_range(volume) == tuple(
        float(v) for v in np.percentile(volume, [0.1, 99.9])
    )


def test_kolmogorov_sf_equals_scipy_on_both_series():
    from scipy.special import kolmogorov

    for z in [0.0, 0.05, 0.3, 0.7, 0.99, 1.0, 1.01, 1.5, 2.5, 5.0, 9.0]:
        assert metrics.kolmogorov_sf(z) == pytest.approx(
            float(kolmogorov(z)), rel=1e-12, abs=1e-300
        )


def test_ks_test_statistic_equals_scipy_and_pvalue_is_its_asymptotic_form():
    from scipy import stats

    rng = np.random.default_rng(5)
    a = rng.normal(100, 10, size=(30, 30, 30))
    b = rng.normal(100.25, 10, size=(30, 30, 30))
    ours = metrics.ks_test(a, b)
    theirs = stats.ks_2samp(a.ravel(), b.ravel(), method="asymp")
    assert ours["statistic"] == pytest.approx(float(theirs.statistic), abs=0)
    assert ours["pvalue"] == pytest.approx(float(theirs.pvalue), rel=0.02)
    assert 1e-3 < ours["pvalue"] < 0.05


def test_mean_std_and_difference_std_equal_numpy_in_float64():
    rng = np.random.default_rng(6)
    a = np.asfortranarray(rng.integers(0, 65535, size=(70, 60, 300), dtype=np.uint16))
    b = np.asfortranarray(rng.integers(0, 65535, size=a.shape, dtype=np.uint16))
    mean, std = metrics.mean_std(a)  # 1.26 M voxels: more than one chunk
    assert mean == pytest.approx(np.mean(a, dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(np.std(a, dtype=np.float64), rel=1e-12)
    expected = np.std(a.astype(np.float64) - b)
    assert metrics.difference_std(a, b) == pytest.approx(expected, rel=1e-12)
    assert metrics.difference_std(a, a) == 0.0


def test_noise_sigma_with_mask_equals_the_unstreamed_formula():
    rng = np.random.default_rng(7)
    image = rng.integers(100, 900, size=(33, 41, 19), dtype=np.uint16)
    mask = (rng.random(image.shape) < 0.1).astype(np.uint8)
    data = image.astype(np.float32)
    diff = data[:-2] - 2.0 * data[1:-1] + data[2:]
    bg = mask == 0
    diff = diff[bg[:-2] & bg[1:-1] & bg[2:]]
    mad = float(np.median(np.abs(diff - np.median(diff))))
    expected = 1.482602218505602 * mad / np.sqrt(6.0)
    assert metrics.noise_sigma(image, mask) == pytest.approx(expected, rel=1e-12)
    assert metrics.noise_sigma(image) != metrics.noise_sigma(image, mask)


def test_drift_image_jobs_do_not_import_scipy_stats():
    """scipy.stats costs ~1.4 s of start-up in each of the hundreds of drift jobs."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from minivess_bundle import drift\n"
        "x = np.random.default_rng(0).integers(0, 999, (20, 20, 6)).astype(np.uint16)\n"
        "for kind in ('intensity', 'noise', 'attenuation', 'pmt'):\n"
        "    out, rec = drift.apply_drift(x, kind, 0.6, 1, return_record=True, spacing=(1, 1, 2))\n"
        "    drift.verification_figures(kind, x, out, record=rec, mask=(x > 500))\n"
        "print(sorted(m for m in sys.modules if m.startswith('scipy.stats')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("density", [0.05, 0.3, 0.7])
def test_euler_characteristic_equals_skimage_euler_number(density):
    from skimage.measure import euler_number

    rng = np.random.default_rng(int(density * 100))
    mask = rng.random((23, 17, 9)) < density
    mask[0, :, :] = True  # touching the faces of the volume, too
    assert metrics.euler_characteristic(mask) == euler_number(mask, connectivity=3)


def test_euler_characteristic_of_known_shapes_and_the_real_mask():
    from skimage.measure import euler_number

    from minivess_bundle.core.nifti import read_nifti

    ring = np.zeros((7, 7, 3), bool)
    ring[1:6, 1:6, 1] = True
    ring[2:5, 2:5, 1] = False
    shell = np.zeros((5, 5, 5), bool)
    shell[1:4, 1:4, 1:4] = True
    shell[2, 2, 2] = False
    assert metrics.euler_characteristic(tube()) == 1  # a ball-like solid
    assert metrics.euler_characteristic(ring) == 0  # one loop
    assert metrics.euler_characteristic(shell) == 2  # one cavity
    real = np.asarray(read_nifti(REAL_MASK).dataobj)
    assert metrics.euler_characteristic(real) == euler_number(real > 0, connectivity=3)
