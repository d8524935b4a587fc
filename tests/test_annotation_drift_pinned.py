"""The annotation drift's output is pinned, byte for byte, at every level.

The sha256 of the drifted mask (uint8 bytes, C order), of the record and of the
rounded figures, on two small deterministic inputs: a synthetic volume (generated,
96 x 96 x 24 at 0.405 x 0.405 x 2.0 µm) and a crop of the real mv68 mask (tests/data,
x 200..295, y 200..295, z 20..67). The hashes were computed with the code before the
speed-up of issue #27 (per-segment work on bounding boxes, level-independent work done
once): any change of behaviour, however small, fails here.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import REPO

from minivess_bundle.core.metrics import skeleton as skeletonise
from minivess_bundle.core.nifti import read_nifti
from minivess_bundle.drift.base import severity_for_level
from minivess_bundle.drift.kinds.label import AnnotationDrift
from minivess_bundle.drift.verify import round_figures
from minivess_bundle.fetch.synthetic import generate_volume

SEED = 1234


def _synthetic():
    volume = generate_volume(7, "mv12", 96, 24)
    return volume.mask, volume.acquisition.spacing_um


def _real_crop():
    mask = np.asarray(read_nifti(REPO / "tests" / "data" / "mv68_y.nii.gz").dataobj)
    return (mask[200:296, 200:296, 20:68] > 0).astype(np.uint8), (0.994, 0.994, 2.0)


INPUTS = {"synthetic": _synthetic, "mv68_crop": _real_crop}

#: {input: {level: (mask sha256, record sha256, figures sha256)}} from the code before #27.
PINNED = {
    "mv68_crop": {
        1: (
            "06e5dc60c5c293c1491c04745e81b4f23fc62d433e89655c43ea8fcd401d11fa",
            "c2a5d4b57290e4cbbe4ae878bc4cd216fe8a37b73a2cfb4c13ac1df0af9969f9",
            "bb2c69d6b67162fce1fdf0f377c16fcc51b0ee5af5b3657da7fb6523de6c0d0e",
        ),
        2: (
            "77d0b50ccc07cd05a28efc67a2f1601bb90f3118ff5a73e01080ce4e22011bd0",
            "fb5575fc8d828eca624a7e69f9fe629ef70b16d16bd59d51555be581a95caae8",
            "afee3ad33062d384416507737281543fd84d2ea6f541b45439c57af4ec8464ea",
        ),
        3: (
            "0ff848135da3fe1e167c6b2f5700cfa03966305f424ef8afdddc251f615ad91a",
            "8b69bfb620d01f1d708e71c7ed47256dd60c13ba86bc3b281249a4065f46aee2",
            "8821eaa18dc3e7312537cdca97e701e30913a27ca754e082c48b54888c333473",
        ),
        4: (
            "0376b71117cd424f55ed12f53fdaf3832609b9ee44beb9e073059e39136e51f6",
            "c9a46d3d888cbc982e436dfda94106888f8e08a21c8311b7c27db3bcc15084d3",
            "9b3ecf1e905b38054d16d0183560ee5bbd8f7442b920738bf9461fe01b55db35",
        ),
        5: (
            "f2ad852789ed57604f485568cd77270d557ec3476b109fcbc2d79cf6ca634670",
            "662826fc572bef16417d664f306f97d87e11c79b10332660bf343f76bcbb9f55",
            "61c03a40655fba1973ea84e297fde28712f4f186b3e100a062b2656a0e5f4d76",
        ),
    },
    "synthetic": {
        1: (
            "316f1c5bb9de8ca933afd9c4cccd062276aae37aabfb8233163202c2976a7630",
            "60e61744c613a9c27848ccb8dd2eb62afaba5d27e86d4e59abcbd509925ef331",
            "a303631360ce35c967025c05420fcd53b09a8575e11195f1e65c2739c3e92c2f",
        ),
        2: (
            "91274023b388e05c12d30854695cdbc624bcbcf34cdef82879df6b2deaf7d704",
            "61c7a2b945672006935957a692d94507dfc729d6a546ba2413def3cbffbabdd5",
            "46b787d479001ad9f5da23e4511c02618ee3d11a338335ba23d75509f4530bbc",
        ),
        3: (
            "a00d0312436df79a673791a6a9840563dfe1671f061ecdcb372f431b06e1fc08",
            "b6143507a75674af1aba928d1bbeedf0dfa950d2276d73fb4f8dad7f35a1e0cb",
            "f6921e38cc1c149e4b93b84b2ab1db369cb0610b3aee59fca941eba67d646667",
        ),
        4: (
            "5d3d86a249a79baa3411ebbd06a8166a5ebd7db3838f5ffc6a1fd8c618d26b05",
            "eb1a851bc38bd301ca0f5113b15d7796f22d32bbd77d141d3b70621794e38011",
            "b928f22ece03871e90f2bed2979e3f670a6154ce37452dd729603a8f93bb59e2",
        ),
        5: (
            "cdc1ea8138f9c396b458b3c8858fc23d1a9b06689c55aab6b10870a560b52bf0",
            "1ca0cd5308d8e9fa9f9b9aef99c446b5177161d7e6f8dc4c1f5097a6202aff33",
            "9389f32bbdb4d8c483a9127c72898b0ea7d13949b1ed39d7ea6369a9d9c1dccf",
        ),
    },
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digests(mask, spacing, level, with_skeleton, skeleton=None, cache=None):
    context = {"spacing": spacing}
    if with_skeleton:
        context["skeleton"] = skeletonise(mask) if skeleton is None else skeleton
    drift = AnnotationDrift(severity_for_level(level), SEED)
    drifted, record = drift(mask, **context, cache=cache)
    figures = round_figures(
        drift.figures(
            mask,
            drifted,
            record,
            spacing=spacing,
            clean_skeleton=context.get("skeleton"),
            cache=cache,
        )
    )
    assert drifted.dtype == mask.dtype and drifted.shape == mask.shape
    return (
        _sha(np.ascontiguousarray(drifted).tobytes()),
        _sha(json.dumps(record, sort_keys=True).encode()),
        _sha(json.dumps(figures, sort_keys=True).encode()),
    )


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_annotation_drift_output_is_pinned_at_every_level(name):
    mask, spacing = INPUTS[name]()
    got = {level: _digests(mask, spacing, level, True) for level in (1, 2, 3, 4, 5)}
    assert got == PINNED[name]


def test_annotation_drift_without_a_given_skeleton_matches_the_pinned_output():
    mask, spacing = INPUTS["synthetic"]()
    assert _digests(mask, spacing, 3, False) == PINNED["synthetic"][3]


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_levels_sharing_one_cache_give_the_pinned_output(name):
    """As one drift job makes them: the level-independent part computed once, reused."""
    mask, spacing = INPUTS[name]()
    centre = skeletonise(mask)
    cache: dict = {}
    got = {level: _digests(mask, spacing, level, True, centre, cache) for level in (5, 1, 2, 3, 4)}
    assert got == PINNED[name]
    assert len(cache) == 2  # the drift's and the figures' clean part, each made once
    # another mask of the same shape is never served the first one's part
    other = np.ascontiguousarray(mask[::-1])
    assert _digests(other, spacing, 3, True, None, cache) == _digests(other, spacing, 3, True)
