"""Two-sample drift detectors: reference rows vs test rows of a fixed representation.

Every detector returns an :class:`Outcome`: a ``statistic`` (larger = more evidence of
drift; what the calibrated null of :mod:`.null` ranks) and the detector's own
``p_value`` (which assumes the rows are independent draws: the *uncalibrated* p).

- :func:`ks_bonferroni`: a two-sample Kolmogorov-Smirnov test per column (vectorised;
  equal to ``scipy.stats.ks_2samp(method="asymp")``), Bonferroni over the columns;
  statistic ``-log10`` of the smallest column p-value. Used on intensity features (KS)
  and softmax summaries (BBSD,
  Rabanser et al. 2019).
- :func:`mmd_permutation`: the (biased, V-statistic) squared MMD with a Gaussian kernel
  ``exp(-d^2 / (2 sigma^2))``, ``sigma`` the median pairwise distance of the pooled rows
  (median heuristic, invariant under permutation), p-value from ``permutations`` label
  permutations, ``(1 + #{perm >= observed}) / (1 + permutations)``.
- :func:`c2st`: a classifier two-sample test: L2 logistic regression (Newton steps) on
  standardised columns, trained on half of ``n`` test and ``n`` random reference rows,
  accuracy on the other half; p-value = binomial tail P(X >= correct | trials, 1/2).
  Fewer than 2 test rows: no test (p = 1).
- :func:`python_plugin`, :func:`command_plugin`: one's own detector, given the reference
  and test unit files, returning a p-value (statistic = ``-log10 p``).
"""

from __future__ import annotations

import importlib
import math
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .sets import DriftEvalError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

P_FLOOR = 1e-300


@dataclass(frozen=True)
class Outcome:
    statistic: float
    p_value: float


def _log_stat(p: float) -> float:
    return -math.log10(max(float(p), P_FLOOR))


def ks_statistics(reference: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The two-sample KS statistic D of every column (as ``scipy.stats.ks_2samp``)."""
    import numpy as np

    reference, test = np.atleast_2d(reference), np.atleast_2d(test)
    m, n = len(reference), len(test)
    out = np.empty(reference.shape[1])
    for j in range(reference.shape[1]):
        a, b = np.sort(reference[:, j]), np.sort(test[:, j])
        both = np.concatenate([a, b])
        cdf_a = np.searchsorted(a, both, side="right") / m
        cdf_b = np.searchsorted(b, both, side="right") / n
        out[j] = np.abs(cdf_a - cdf_b).max()
    return out


def ks_pvalues(d: np.ndarray, m: int, n: int) -> np.ndarray:
    """Two-sided asymptotic p-values, as ``ks_2samp(..., method="asymp")``:
    ``kstwo.sf(D, round(m n / (m + n)))``."""
    import numpy as np
    from scipy.stats import kstwo

    en = float(m) * float(n) / (float(m) + float(n))
    return np.clip(kstwo.sf(d, np.round(en)), 0.0, 1.0)


def ks_bonferroni(reference: np.ndarray, test: np.ndarray) -> Outcome:
    """KS per column (asymptotic p), Bonferroni-corrected minimum p-value."""
    reference, test = _rows(reference), _rows(test)
    d = ks_statistics(reference, test)
    pvalues = ks_pvalues(d, len(reference), len(test))
    smallest = float(pvalues.min())
    return Outcome(statistic=_log_stat(smallest), p_value=min(1.0, len(d) * smallest))


def _rows(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def squared_distances(rows: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances (clipped at 0)."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.float64)
    norms = (rows**2).sum(axis=1)
    d2 = norms[:, None] + norms[None, :] - 2.0 * rows @ rows.T
    np.fill_diagonal(d2, 0.0)
    return np.maximum(d2, 0.0)


def median_bandwidth(d2: np.ndarray) -> float:
    """The median heuristic: median pairwise distance (off the diagonal) of the pooled rows."""
    import numpy as np

    n = d2.shape[0]
    upper = d2[np.triu_indices(n, k=1)]
    sigma = float(np.median(np.sqrt(upper))) if upper.size else 1.0
    return sigma if sigma > 0 else 1.0


def mmd2_biased(kernel: np.ndarray, is_test: np.ndarray) -> np.ndarray:
    """Biased squared MMD for each row of ``is_test`` (B x N 0/1 labels) on one kernel."""
    import numpy as np

    labels = np.atleast_2d(np.asarray(is_test, dtype=np.float64))
    n = labels.sum(axis=1)
    m = labels.shape[1] - n
    weighted = labels @ kernel
    s_tt = (weighted * labels).sum(axis=1)
    s_tr = weighted.sum(axis=1) - s_tt
    s_rr = kernel.sum() - s_tt - 2.0 * s_tr
    return s_tt / n**2 + s_rr / m**2 - 2.0 * s_tr / (n * m)


def mmd_permutation(
    reference: np.ndarray,
    test: np.ndarray,
    rng: np.random.Generator,
    permutations: int = 200,
    sigma: float | None = None,
    d2: np.ndarray | None = None,
) -> Outcome:
    """Gaussian-kernel MMD (median heuristic unless ``sigma``) with a permutation p-value.

    ``d2``: the pooled rows' squared distances when already known (reference rows first).
    ``permutations`` 0: the statistic only, ``p_value`` 1 (no permutation is drawn).
    """
    import numpy as np

    if d2 is None:
        pooled = np.concatenate([_rows(reference), _rows(test)])
        d2 = squared_distances(pooled)
    bandwidth = median_bandwidth(d2) if sigma is None else float(sigma)
    kernel = np.exp(-d2 / (2.0 * bandwidth**2))
    total, n = d2.shape[0], len(test)
    labels = np.zeros(total)
    labels[total - n :] = 1.0
    observed = float(mmd2_biased(kernel, labels)[0])
    if int(permutations) < 1:  # the statistic only (a calibrated null ranks it): p = 1
        return Outcome(statistic=observed, p_value=1.0)
    shuffled = np.argsort(rng.random((int(permutations), total)), axis=1) >= total - n
    null = mmd2_biased(kernel, shuffled)
    p = (1 + int(np.count_nonzero(null >= observed - 1e-12))) / (1 + int(permutations))
    return Outcome(statistic=observed, p_value=p)


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 25) -> np.ndarray:
    """Weights (bias last) of an L2-penalised logistic regression, by Newton's method."""
    import numpy as np

    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    penalty = np.eye(design.shape[1]) * l2
    penalty[-1, -1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -30, 30)))
        gradient = design.T @ (p - y) + penalty @ w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def c2st(reference: np.ndarray, test: np.ndarray, rng: np.random.Generator) -> Outcome:
    """Classifier two-sample test on balanced halves; statistic = held-out accuracy."""
    import numpy as np
    from scipy.stats import binom

    test = np.atleast_2d(test)
    reference = np.atleast_2d(reference)
    n = len(test)
    if n < 2 or len(reference) < 2:
        return Outcome(statistic=0.5, p_value=1.0)
    n = min(n, len(reference))
    ref = reference[rng.choice(len(reference), size=n, replace=False)]
    tst = test[rng.permutation(len(test))[:n]]
    half = n // 2
    train_x = np.vstack([ref[:half], tst[:half]])
    train_y = np.r_[np.zeros(half), np.ones(half)]
    eval_x = np.vstack([ref[half:], tst[half:]])
    eval_y = np.r_[np.zeros(n - half), np.ones(n - half)]
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    w = logistic_fit((train_x - mean) / std, train_y)
    design = np.hstack([(eval_x - mean) / std, np.ones((len(eval_x), 1))])
    predicted = (design @ w > 0).astype(float)
    correct = int((predicted == eval_y).sum())
    trials = len(eval_y)
    p = float(binom.sf(correct - 1, trials, 0.5))
    return Outcome(statistic=correct / trials, p_value=min(1.0, p))


#: how Evidently's DataDriftPreset is configured: as the dataset authors configure it
EVIDENTLY_PRESET = {"method": "ks", "threshold": 0.05, "drift_share": 0.5}


def patch_pandas_for_evidently() -> None:
    """Evidently 0.7 imports ``pandas.core.dtypes.common.infer_dtype_from_object``, which
    pandas 3 removed; give it pandas 2's meaning (the dtype's scalar type) before import."""
    import pandas as pd
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: pd.api.types.pandas_dtype(dtype).type


def evidently_preset(reference: np.ndarray, test: np.ndarray, columns: Sequence[str]) -> Outcome:
    """Evidently's DataDriftPreset (:data:`EVIDENTLY_PRESET`) on the rows of ``reference``
    (the reference data) and ``test`` (the current data), one numerical column each.

    Statistic: the share of drifted columns; ``p_value`` 0 when Evidently declares the
    dataset drifted (share >= drift share), else 1, so the uncalibrated rate is
    Evidently's own verdict. Needs the optional ``evidently`` extra.
    """
    import numpy as np

    try:
        import pandas as pd

        patch_pandas_for_evidently()
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError as exc:
        raise DriftEvalError(
            f"detector evidently: {exc}",
            expected="the evidently extra: pip install 'minivess-bundle[evidently]'",
        ) from exc
    names = list(columns)
    definition = DataDefinition(numerical_columns=names)
    frames = [
        Dataset.from_pandas(
            pd.DataFrame(np.atleast_2d(rows), columns=names), data_definition=definition
        )
        for rows in (test, reference)
    ]
    snapshot = Report([DataDriftPreset(**EVIDENTLY_PRESET)]).run(*frames)
    for metric in snapshot.dict()["metrics"]:
        if metric["metric_name"].startswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            drifted = share >= EVIDENTLY_PRESET["drift_share"]
            return Outcome(statistic=share, p_value=0.0 if drifted else 1.0)
    raise DriftEvalError(
        "detector evidently: no DriftedColumnsCount in the report",
        expected="Evidently 0.7's DataDriftPreset",
    )


PValueFunction = Callable[[list[str], list[str]], float]


def _checked_p(value: object, name: str) -> float:
    try:
        p = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise DriftEvalError(
            f"plug-in {name!r} returned {value!r}", expected="a p-value in [0, 1]"
        ) from exc
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise DriftEvalError(f"plug-in {name!r} returned {p}", expected="a p-value in [0, 1]")
    return p


def python_plugin(spec: str, name: str | None = None) -> Callable[[list[str], list[str]], Outcome]:
    """``"package.module:function"`` -> a detector on file lists.

    The function is called as ``function(reference_files, test_files)`` and returns a
    p-value (a float in [0, 1]).
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise DriftEvalError(f"plug-in {spec!r}", expected="'package.module:function'")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DriftEvalError(f"plug-in {spec!r}: {exc}", expected="an importable function") from exc
    label = name or spec

    def detect(reference: list[str], test: list[str]) -> Outcome:
        p = _checked_p(function(list(reference), list(test)), label)
        return Outcome(statistic=_log_stat(p), p_value=p)

    return detect


def command_plugin(
    template: str, name: str | None = None, timeout_s: float = 600.0
) -> Callable[[list[str], list[str]], Outcome]:
    """A command (no shell) with ``{reference}`` and ``{test}`` placeholders -> a detector.

    Each placeholder becomes the path of a text file listing one unit file per line; the
    last non-empty line the command prints on stdout is its p-value. A non-zero exit
    status is an error naming the plug-in and its stderr's last line.
    """
    words = shlex.split(template)
    if not any("{reference}" in w for w in words) or not any("{test}" in w for w in words):
        raise DriftEvalError(
            f"plug-in command {template!r}", expected="both {reference} and {test} placeholders"
        )
    label = name or words[0]

    def detect(reference: list[str], test: list[str]) -> Outcome:
        with tempfile.TemporaryDirectory(prefix="drift-eval-plugin-") as tmp:
            ref_list, test_list = Path(tmp) / "reference.txt", Path(tmp) / "test.txt"
            ref_list.write_text("".join(f"{p}\n" for p in reference))
            test_list.write_text("".join(f"{p}\n" for p in test))
            argv = [w.format(reference=ref_list, test=test_list) for w in words]
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout_s, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise DriftEvalError(
                    f"plug-in {label!r}: {exc}", expected="a command that runs"
                ) from exc
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or [""])[-1]
            raise DriftEvalError(
                f"plug-in {label!r} exited {done.returncode}: {tail}", expected="exit status 0"
            )
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        p = _checked_p(lines[-1].strip() if lines else "", label)
        return Outcome(statistic=_log_stat(p), p_value=p)

    return detect


def plugin_from_config(entry: dict[str, str]) -> Callable[[list[str], list[str]], Outcome]:
    """A plug-in from its config entry: ``{name, python}`` or ``{name, command}``."""
    if entry.get("python"):
        return python_plugin(entry["python"], entry.get("name"))
    if entry.get("command"):
        return command_plugin(entry["command"], entry.get("name"))
    raise DriftEvalError(f"plug-in {entry!r}", expected="a 'python' or a 'command' key")


def unit_files(paths: Sequence[str], indices: Sequence[int]) -> list[str]:
    return [paths[int(i)] for i in indices]
