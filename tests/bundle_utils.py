"""Tiny input trees for the bundle tests: what validate/resample/drift would leave behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SDE = 1_700_000_000  # 2023-11-14T22:13:20Z
VOLUMES = ("mv01", "mv02")
SPACING = (0.994, 0.994, 2.0)


def make_inputs(root: Path) -> dict[str, Path]:
    """raw/, processed/, drift/<variant>/ trees of tiny NIfTI pairs, two documents, a lock."""
    import numpy as np

    from minivess_bundle.core.fsio import write_json_atomic
    from minivess_bundle.core.nifti import make_image, minivess_header, write_nifti

    rng = np.random.default_rng(7)
    for section, spacing in (("raw", SPACING), ("processed", (1.0, 1.0, 2.0))):
        for vol in VOLUMES:
            image = rng.integers(0, 4000, (6, 5, 3), dtype=np.uint16)
            label = (image > 2000).astype(np.uint8)
            write_nifti(
                root / section / "imagesTr" / f"{vol}.nii.gz",
                make_image(image, spacing, minivess_header("image")),
            )
            write_nifti(
                root / section / "labelsTr" / f"{vol}.nii.gz",
                make_image(label, spacing, minivess_header("label")),
            )
            write_json_atomic(root / section / "metadata" / f"{vol}.json", {"volume": vol})
    for variant in ("gaussian_noise", "blur"):
        image = rng.integers(0, 4000, (6, 5, 3), dtype=np.uint16)
        write_nifti(
            root / "drift" / variant / "imagesTr" / "mv01.nii.gz",
            make_image(image, (1.0, 1.0, 2.0), minivess_header("image")),
        )
    (root / "processed" / ".snakemake_timestamp").write_text("hidden, never bundled\n")
    write_json_atomic(root / "validation_report.json", {"passed": list(VOLUMES)})
    write_json_atomic(root / "drift_manifest.json", {"variants": ["blur", "gaussian_noise"]})
    (root / "lock.txt").write_text("# lock\nnumpy==2.4.6\nbagit==1.9.0\n")
    return {
        "raw": root / "raw",
        "processed": root / "processed",
        "drift": root / "drift",
        "validation_report": root / "validation_report.json",
        "drift_manifest": root / "drift_manifest.json",
        "lock": root / "lock.txt",
    }


def build(inputs: dict[str, Path], out: Path, **overrides):
    """assemble_bundle with every section, both documents and a provenance record."""
    from minivess_bundle.bundle import assemble_bundle

    kwargs = dict(
        raw_dir=inputs["raw"],
        processed_dir=inputs["processed"],
        drift_dir=inputs["drift"],
        documents={
            "validation_report.json": inputs["validation_report"],
            "drift_manifest.json": inputs["drift_manifest"],
        },
        quarantine={"mv07": "mask values {0, 2} — expected a subset of {0, 1}"},
        provenance={
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "config": {"source": "zip", "zip": {"path": str(inputs["raw"].parent / "d.zip")}},
            "lock_file": inputs["lock"],
        },
        source_date_epoch=SDE,
    )
    kwargs.update(overrides)
    return assemble_bundle(out, "0.1.0", **kwargs)


def dvc_env(tmp: Path) -> dict[str, str]:
    """Environment for the real dvc CLI: no analytics, no update check, no global state."""
    config_dir = tmp / "dvc-global"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "config").write_text("[core]\n    analytics = false\n    check_update = false\n")
    env = dict(os.environ)
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(config_dir),
        DVC_SYSTEM_CONFIG_DIR=str(config_dir),
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
        DVC_IGNORE_ISATTY="1",
    )
    return env


def dvc_exe() -> str | None:
    """The dvc CLI of this interpreter's environment, if installed."""
    exe = Path(sys.executable).parent / "dvc"
    return str(exe) if exe.is_file() else shutil.which("dvc")


def run_dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    """Run ``dvc ARGS`` in ``repo``; return stdout+stderr; raise with the output on failure."""
    proc = subprocess.run(
        [dvc_exe(), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr
