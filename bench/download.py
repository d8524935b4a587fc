"""Download benchmark: the workflow's EBRAINS download vs curl, same files, same server.

Serves N synthetic volumes of real MiniVess size (512 x 512, Z and spacing drawn
like the release) from the local fake data-proxy on 127.0.0.1, then fetches every
file (i) with minivess_bundle.fetch.ebrains (listing-verified: size + MD5, sha256
recorded, atomic rename) and (ii) with one curl process (-L, connection reuse),
alternating, several rounds. Prints throughput of each and the ratio.

    python bench/download.py --volumes 3 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fake_dataproxy import DATASET_ID, FakeDataProxy  # noqa: E402

from minivess_bundle.core.volumes import ALL_VOLUMES, EBRAINS_LICENCE  # noqa: E402
from minivess_bundle.fetch import ebrains  # noqa: E402
from minivess_bundle.fetch.synthetic import write_synthetic_volume  # noqa: E402


def make_release(root: Path, count: int) -> None:
    for volume in ALL_VOLUMES[:count]:
        write_synthetic_volume(root, volume, seed=20230301, size_xy=512)
    (root / EBRAINS_LICENCE).write_bytes(b"%PDF-1.4 stand-in\n")


def time_ours(proxy: FakeDataProxy, names: list[str], work: Path) -> float:
    settings = ebrains.ClientSettings(api_base=proxy.api_base, dataset_id=DATASET_ID)
    listing = work / "listing.json"
    if not listing.exists():
        ebrains.fetch_listing(listing, [], settings)
    cache = work / f"ours-{time.monotonic_ns()}"
    start = time.perf_counter()
    ebrains.download_objects(names, listing, cache, settings)
    return time.perf_counter() - start


def time_curl(proxy: FakeDataProxy, names: list[str], work: Path) -> float:
    out = work / f"curl-{time.monotonic_ns()}"
    out.mkdir()
    command = ["curl", "-sS", "--fail", "-L"]
    for i, name in enumerate(names):
        command += [
            "-o",
            str(out / f"{i}.bin"),
            ebrains.object_url(
                ebrains.ClientSettings(api_base=proxy.api_base, dataset_id=DATASET_ID), name
            ),
        ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        release = work / "release"
        make_release(release, args.volumes)
        with FakeDataProxy(release) as proxy:
            names = [n for n in proxy.names() if n != EBRAINS_LICENCE]
            total = sum((release / n).stat().st_size for n in names)
            ours, curl = [], []
            for _ in range(args.rounds):
                ours.append(time_ours(proxy, names, work))
                curl.append(time_curl(proxy, names, work))
    o, c = statistics.median(ours), statistics.median(curl)
    print(f"files: {len(names)}, bytes: {total:,} ({total / 1e6:.1f} MB), rounds: {args.rounds}")
    print(
        f"minivess-bundle download: median {o:.3f} s  ({total / o / 1e6:.1f} MB/s)  "
        f"runs {[round(x, 3) for x in ours]}"
    )
    print(
        f"curl -L (one process):    median {c:.3f} s  ({total / c / 1e6:.1f} MB/s)  "
        f"runs {[round(x, 3) for x in curl]}"
    )
    print(f"throughput ratio ours/curl: {c / o:.2f}  (target >= 0.90)")


if __name__ == "__main__":
    main()
