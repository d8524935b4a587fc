"""A small bundle for drift_eval tests: synthetic volumes in the bag layout and a drift
manifest naming one held-out volume's variants (files real, sha256 real)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: The drift_eval config of the small protocol runs (tests/test_drift_eval_protocol.py and
#: bench/drift_eval_cost.py): three detectors, small patches, few repetitions, no harm.
DRIFT_EVAL_SMALL = {
    "detectors": ["ks", "mmd", "c2st"],
    "patch": [8, 8, 4],
    "patches_per_volume": 10,
    "fractions": [1.0],
    "repetitions": 2,
    "permutations": 19,
    "harm": False,
}


def make_bag(
    root: Path,
    count: int = 24,
    size_xy: int = 32,
    max_z: int = 16,
    kinds: tuple[tuple[str, int], ...] = (("noise", 5), ("topology", 5)),
    seed: int = 11,
) -> Path:
    """``count`` synthetic volumes mv01.. (the package's own generator) in
    ``root/bag/data/processed``; the last one is the manifest's held-out volume, its
    variants ``kinds`` (kind, level) copies of its clean files (only the plan is read)."""
    from minivess_bundle.core.nifti import make_image, minivess_header, write_nifti
    from minivess_bundle.fetch.synthetic import generate_volume

    data = root / "bag" / "data"
    ids = [f"mv{i:02d}" for i in range(1, count + 1)]
    digests = {}
    for vol in ids:
        synthetic = generate_volume(seed, vol, size_xy, max_z)
        for key, array, folder in (
            ("image", synthetic.image, "imagesTr"),
            ("label", synthetic.mask, "labelsTr"),
        ):
            path = data / "processed" / folder / f"{vol}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = make_image(array, synthetic.acquisition.spacing_um, minivess_header(key))
            write_nifti(path, image)
            digests[(vol, key)] = hashlib.sha256(path.read_bytes()).hexdigest()
    held = ids[-1]
    variants = []
    for kind, level in kinds:
        files = {}
        for key, folder in (("image", "imagesTr"), ("label", "labelsTr")):
            clean = data / "processed" / folder / f"{held}.nii.gz"
            drifted = data / "drift" / kind / str(level) / folder / f"{held}.nii.gz"
            drifted.parent.mkdir(parents=True, exist_ok=True)
            drifted.write_bytes(clean.read_bytes())
            files[key] = {
                "clean": {"path": f"{folder}/{held}.nii.gz", "sha256": digests[(held, key)]},
                "drifted": {
                    "path": f"{kind}/{level}/{folder}/{held}.nii.gz",
                    "sha256": digests[(held, key)],
                },
            }
        variants.append(
            {
                "volume": held,
                "drift_type": kind,
                "level": level,
                "severity": level / 5,
                "target": "label" if kind in ("topology", "annotation") else "image",
                "parameters": {},
                "reference_split_ids": ids[:-1],
                "files": files,
            }
        )
    (data / "drift_manifest.json").write_text(json.dumps({"variants": variants}))
    return root / "bag"
