"""Kinds made of other kinds: compound (several at once) and gradual (rising over batches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.errors import DriftError
from .. import verify
from ..base import check_seed, check_severity, fresh_seed
from .core import REGISTRY, Drift


def check_registered(kind: str) -> str:
    """``kind`` if it is a registered single-volume kind, else a :class:`DriftError`."""
    if kind not in REGISTRY:
        raise DriftError(f"drift type {kind!r} is not known", expected=f"one of {tuple(REGISTRY)}")
    return kind


def build(kind: str, severity: float, seed: int | None, **params: Any) -> Drift:
    """The transform of a registered single-volume kind with its explicit parameters."""
    cls = REGISTRY[check_registered(kind)]
    try:
        return cls(severity, seed, **params)
    except TypeError as exc:
        raise DriftError(f"{kind} parameters {sorted(params)}: {exc}") from exc


class CompoundDrift(Drift):
    """Two (or more) kinds at once, each at the same severity: by default attenuation then
    noise (a deeper, dimmer preparation imaged with fewer photons).

    Each component has its own stream (seed derived from this kind's seed and the
    component's name), so levels stay nested component by component; every
    component's record is kept. Primary figure: the *modelled* SNR loss (dB) of the
    deepest quarter of slices, the sum of each component's loss computed from its applied
    parameters and the clean volume (:func:`modelled_snr_loss_db`): photon thinning
    (attenuation, bleaching) ``-10 log10 t`` (t: the quarter's mean kept photon fraction,
    the shot-noise limit), added noise ``10 log10(1 + v / r**2)`` (v: the noise kind's
    added variance at the quarter's background, r: the clean noise sd); a component
    outside these adds its own primary figure's change. Each term grows strictly with s,
    so the figure does on any volume; the SNR loss measured on the files (on the
    vessels; the whole volume's vessels when the deepest quarter has none;
    ``snr_loss_region`` says which) is recorded beside it.
    """

    name = "compound"
    primary = ("modelled_snr_loss_db_deepest_quarter", "increasing")
    DEFAULT = ("attenuation", "noise")

    def __init__(self, severity=0.5, seed=None, *, kinds: Sequence[str] = DEFAULT) -> None:
        super().__init__(severity, seed)
        kinds = tuple(kinds)
        allowed = self.allowed()
        if len(kinds) < 2 or len(set(kinds)) != len(kinds) or not set(kinds) <= set(allowed):
            raise DriftError(
                f"compound kinds {list(kinds)}", expected=f"two or more distinct of {allowed}"
            )
        self.kinds = kinds

    @classmethod
    def allowed(cls) -> list[str]:
        """The kinds a compound may combine: every image kind but compound itself."""
        return [k for k, kind in REGISTRY.items() if kind.target == "image" and k != cls.name]

    def components(self) -> list[Drift]:
        from ..base import derive_seed

        return [build(k, self.severity, derive_seed(self.seed, self.name, k)) for k in self.kinds]

    def parameters(self):
        return {"kinds": list(self.kinds)}

    def _apply(self, array, rng, **context):
        out, records = array, []
        for component in self.components():
            out, record = component(out, **context)
            records.append(record)
        return out, {"components": records}

    def figures(self, clean, drifted, record, mask=None, **context):
        import numpy as np

        figures = {**verify.image_figures(clean, drifted)}
        snr = verify.depth_snr(clean, drifted, mask, 2)
        figures.update(snr)
        where = "vessels" if "snr_change_db_vessels_deepest_quarter" in snr else "whole"
        figures["snr_loss_db_deepest_quarter"] = -snr[f"snr_change_db_{where}_deepest_quarter"]
        figures["snr_loss_region"] = f"deepest quarter, {where}"
        deep = max(1, clean.shape[2] // 4)
        if where == "vessels" and not (np.asarray(mask)[:, :, -deep:] > 0).any():
            # no vessel in the deepest quarter: its "SNR" would be the background's spread,
            # which grows with noise; the whole volume's vessels stand in
            from ...core.metrics import snr_db

            loss = snr_db(clean, mask) - snr_db(drifted, mask)
            figures["snr_loss_db_deepest_quarter"] = loss
            figures["snr_loss_region"] = "whole volume, vessels (none in the deepest quarter)"
        changes = {}
        for component, sub in zip(
            self.components(), record["parameters"].get("components", []), strict=False
        ):
            name, direction = component.primary
            own = component.figures(clean, drifted, sub, mask=mask, **context)
            figures[f"{component.name}_{name}"] = own.get(name)
            value = own.get(name)
            changes[component.name] = (
                abs(abs(value) - verify.UNCHANGED[direction]) if value is not None else 0.0
            )
        figures["modelled_snr_loss_db_deepest_quarter"] = modelled_snr_loss_db(
            clean, mask, record["parameters"].get("components", []), changes
        )
        return figures


def modelled_snr_loss_db(clean, mask, components, changes) -> float:
    """The deepest quarter's SNR loss (dB) the compound's components apply, from their
    records and the clean volume (see :class:`CompoundDrift`); ``changes``: each other
    component's primary-figure change, added as it is."""
    import math

    import numpy as np

    from ...core.metrics import noise_sigma, robust_range

    n = clean.shape[2]
    deep = np.arange(n - max(1, n // 4), n)
    lo, hi = robust_range(clean)
    span = max(hi - lo, 1.0)
    background = None if mask is None or mask.shape != clean.shape else mask[:, :, deep] == 0
    part = clean[:, :, deep]
    level = float(part[background].mean()) if background is not None and background.any() else 0.0
    above = max(level - lo, 0.0)
    sigma = noise_sigma(clean, mask if background is not None else None) or 1.0
    loss = 0.0
    for record in components:
        kind, params = record["type"], record["parameters"]
        if record.get("identity"):
            continue
        if kind == "attenuation":
            depth = deep * params["z_step_um"]
            kept = float(np.exp(-depth * params["delta_inverse_length_per_um"]).mean())
            loss += -10.0 * math.log10(kept)
        elif kind == "bleaching":
            rate = -math.log(params["kept_fraction_last_slice"])
            kept = float(np.exp(-rate * deep / max(n - 1, 1)).mean())
            loss += -10.0 * math.log10(kept)
        elif kind == "noise":
            gain = span * params["sigma_fraction_of_range"] ** 2
            read = params["read_noise_fraction_of_range"] * span
            loss += 10.0 * math.log10(1.0 + (gain * above + read**2) / sigma**2)
        else:
            loss += changes.get(kind, 0.0)
    return loss


def gradual_severities(n_batches: int, max_severity: float = 1.0) -> list[float]:
    """Severity of each ordered batch: ``max_severity * k / n`` for k = 1..n (linear, rising)."""
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 1:
        raise DriftError(f"n_batches {n_batches!r}", expected="a positive integer")
    top = check_severity(max_severity)
    return [top * k / n_batches for k in range(1, n_batches + 1)]


class GradualDrift:
    """One base kind with severity rising linearly over ``n_batches`` ordered batches.

    ``GradualDrift(base, n_batches, max_severity, seed)(batches) -> (outputs, record)``:
    ``batches`` is a sequence of ``n_batches`` volumes or one volume seen in every
    batch. All batches share ``seed`` (nested, like levels).
    """

    name = "gradual"

    def __init__(self, base="intensity", n_batches=3, max_severity=1.0, seed=None, **params):
        self.base = check_registered(base)
        self.severities = gradual_severities(n_batches, max_severity)
        self.n_batches = n_batches
        self.max_severity = check_severity(max_severity)
        self.seed = fresh_seed() if seed is None else check_seed(seed)
        self.base_params = dict(params)

    def __call__(self, batches: Any, **context: Any) -> tuple[list[Any], dict[str, Any]]:
        single = hasattr(batches, "shape") and hasattr(batches, "dtype")
        volumes = [batches] * self.n_batches if single else list(batches)
        if len(volumes) != self.n_batches:
            raise DriftError(
                f"gradual drift got {len(volumes)} batches", expected=f"{self.n_batches}"
            )
        outputs, records = [], []
        for batch, (volume, severity) in enumerate(zip(volumes, self.severities, strict=True), 1):
            drift = build(self.base, severity, self.seed, **self.base_params)
            out, record = drift(volume, **context)
            outputs.append(out)
            records.append({"batch": batch, **record})
        return outputs, {
            "type": self.name,
            "base": self.base,
            "n_batches": self.n_batches,
            "max_severity": self.max_severity,
            "seed": self.seed,
            "severities": list(self.severities),
            "batches": records,
        }
