"""One exception family, so the CLI can turn expected failures into one clear line.

Every message names the volume, the stage, the check, what was observed and what
was expected, and the file, e.g.::

    mv07: validate: mask values {0, 2} — expected a subset of {0, 1} (labelsTr/mv07.nii.gz)
"""

from __future__ import annotations

from pathlib import Path


class MinivessError(Exception):
    """An expected failure a user can act on (bad input, bad config, missing file)."""

    stage = "minivess-bundle"

    def __init__(
        self,
        check: str,
        *,
        volume: str | None = None,
        path: str | Path | None = None,
        expected: str | None = None,
    ) -> None:
        self.check = check
        self.volume = volume
        self.path = None if path is None else str(path)
        self.expected = expected
        super().__init__(self.format())

    def format(self) -> str:
        head = f"{self.volume}: {self.stage}" if self.volume else self.stage
        text = f"{head}: {self.check}"
        if self.expected:
            text += f" — expected {self.expected}"
        if self.path:
            text += f" ({self.path})"
        return text


class ConfigError(MinivessError):
    stage = "config"


class SourceError(MinivessError):
    """A source (zip, dir, synthetic) cannot deliver a volume."""

    stage = "fetch"


class RenameError(MinivessError):
    stage = "rename"


class LoaderError(MinivessError):
    stage = "loader"


class NiftiError(MinivessError):
    """A file is not a readable NIfTI-1 volume."""

    stage = "nifti"


class BundleError(MinivessError):
    """The bundle cannot be assembled, archived or verified as asked."""

    stage = "bundle"


class ValidationError(MinivessError):
    """A volume fails a validation check (policy ``on_invalid: fail``)."""

    stage = "validate"


class ResampleError(MinivessError):
    """A volume cannot be resampled as asked (bad grid, output too large)."""

    stage = "resample"


class DriftError(MinivessError):
    """A drift variant cannot be made or verified (bad type, severity, mask or manifest)."""

    stage = "drift"


class ConsumerError(MinivessError):
    """The bundle cannot be handed to a consumer (MONAI loaders, training smoke, nnU-Net export)."""

    stage = "consumer"
