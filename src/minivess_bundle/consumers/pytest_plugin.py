"""pytest fixtures for downstream test suites (entry point ``pytest11``: ``minivess``).

Installed with minivess-bundle, so any project's tests can ask for::

    def test_my_loader(synthetic_nifti_dataset):          # imagesTr/ labelsTr/ metadata/
        assert len(my_loader(synthetic_nifti_dataset.root)) == 3

    def test_my_importer(synthetic_nifti_release):        # raw/ seg/ json/ (EBRAINS)
        ...

    def test_bigger(create_synthetic_nifti_dataset, tmp_path):
        ds = create_synthetic_nifti_dataset(tmp_path, n_volumes=5, spatial_size=(64, 64, 16))

See :mod:`minivess_bundle.testing` for what the files hold. This module imports only
pytest: numpy, scipy and nibabel load when a fixture is first used, so installing the
package costs other test runs nothing.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def create_synthetic_nifti_dataset():
    """:func:`minivess_bundle.testing.create_synthetic_nifti_dataset` itself (a factory)."""
    from minivess_bundle.testing import create_synthetic_nifti_dataset

    return create_synthetic_nifti_dataset


@pytest.fixture
def synthetic_nifti_dataset(tmp_path):
    """3 synthetic volumes, 32 x 32 x 8, in ``imagesTr/``, ``labelsTr/``, ``metadata/``."""
    from minivess_bundle.testing import create_synthetic_nifti_dataset

    return create_synthetic_nifti_dataset(tmp_path / "minivess-synthetic")


@pytest.fixture
def synthetic_nifti_release(tmp_path):
    """3 synthetic volumes, 32 x 32 x 8, in the release's ``raw/``, ``seg/``, ``json/``."""
    from minivess_bundle.testing import create_synthetic_nifti_dataset

    return create_synthetic_nifti_dataset(tmp_path / "minivess-release", layout="raw")
