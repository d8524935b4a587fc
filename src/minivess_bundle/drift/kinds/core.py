"""The base of every drift kind: :class:`Drift` and the helpers the families share.

A kind is a small transform with explicit, recorded parameters (TorchIO style): it owns
its parameters (derived from the severity ``s`` in [0, 1], or given explicitly), the file
it changes (``target``: image, label or header), the signal a detector should raise, and
its verification figures with the *primary* figure that orders its levels. ``s = 0`` is
the identity (a byte-identical copy).

Nesting: the random stream of a (volume, kind) pair draws everything random once
(noise field, cut order, jitter, ...) whatever the severity; the severity only scales
it or takes a prefix of it, so level k's change is contained in level k + 1's.

Every subclass with a ``name`` registers itself here (:data:`REGISTRY`), so a kind that
composes others (:mod:`.composite`) finds them without importing the families.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ...core.errors import DriftError
from .. import verify
from ..base import (
    Scale,
    check_domain,
    check_seed,
    check_severity,
    check_volume,
    fresh_seed,
    to_numpy,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Every single-volume kind class by name, filled as the family modules are imported.
REGISTRY: dict[str, type[Drift]] = {}


class Drift:
    """Base of the drift kinds: ``Drift(severity, seed)(volume, **context) -> (out, record)``.

    ``record`` holds the kind, severity, seed and every parameter applied, including
    those measured on the input. ``context`` may hold ``spacing`` (um), ``mask`` (the
    clean label, for image kinds that estimate noise on it) and ``skeleton``.
    """

    name: ClassVar[str] = ""
    target: ClassVar[str] = "image"
    expected_signal: ClassVar[str] = "feature_drift"
    #: (figure, direction) that orders the levels; its magnitude grows with severity.
    primary: ClassVar[tuple[str, str]] = ("ks_statistic", "increasing")
    #: The kind's own severity scale (image kinds; ``None``: the kind has none).
    SCALE: ClassVar[Scale | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            REGISTRY[cls.name] = cls

    def __init__(self, severity: float = 0.5, seed: int | None = None) -> None:
        self.severity = check_severity(severity)
        self.seed = fresh_seed() if seed is None else check_seed(seed)

    @property
    def amount(self) -> float:
        """The magnitude of :attr:`SCALE` at this severity."""
        return self.SCALE.at(self.severity) if self.SCALE is not None else self.severity

    def parameters(self) -> dict[str, Any]:
        """The explicit parameters this severity gives (before looking at data)."""
        return {}

    def _apply(self, array, rng, **context) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def figures(self, clean, drifted, record, **context) -> dict[str, Any]:
        """The verification figures of this kind (see :mod:`.verify`)."""
        return verify.image_figures(clean, drifted)

    def __call__(self, data: Any, **context: Any) -> tuple[Any, dict[str, Any]]:
        import numpy as np

        array, restore = to_numpy(data)
        check_volume(array, self.name)
        if self.target in ("image", "label"):
            check_domain(
                array, self.name, self.target, context.get("where", ""), context.get("volume")
            )
        record: dict[str, Any] = {
            "type": self.name,
            "severity": self.severity,
            "seed": self.seed,
            "parameters": self.parameters(),
        }
        if self.SCALE is not None:
            record["parameters"]["scale"] = self.SCALE.record()
        if self.severity == 0.0:
            out = array.copy()
            record["identity"] = True
        else:
            out, measured = self._apply(array, np.random.default_rng(self.seed), **context)
            record["parameters"].update(measured)
            record["identity"] = False
        return restore(out), record

    def __repr__(self) -> str:
        return f"{type(self).__name__}(severity={self.severity}, seed={self.seed})"


def draw_direction(value: int | None, rng) -> int:
    drawn = 1 if rng.random() < 0.5 else -1  # always drawn: the stream stays aligned
    if value is None:
        return drawn
    if value not in (1, -1):
        raise DriftError(f"direction {value!r}", expected="1 or -1")
    return int(value)


def along_axis(values: np.ndarray, axis: int) -> list[int]:
    shape = [1, 1, 1]
    shape[axis] = -1
    return values.reshape(shape)


def cast(values, dtype):
    from ..base import cast_like

    return cast_like(values, dtype)
