"""The command line the rules call: one-line errors, cheap start-up."""

from __future__ import annotations

import subprocess
import sys

from minivess_bundle import __version__
from minivess_bundle.cli import main

RESAMPLE_SPEC = (
    '{"spec":{"codec":"isal","image_interpolator":"linear","label_interpolator":"nearest",'
    '"level":2,"max_output_voxels":0,"source_units":"um","target_spacing_um":[1.0,1.0,1.0]},'
    '"stage":"resample"}'
)


def test_expected_failure_is_one_line_and_exit_code_1(tmp_path, capsys):
    missing = tmp_path / "renamed" / "imagesTr" / "mv07.nii.gz"
    code = main(
        ["resample", "mv07", "--spec", RESAMPLE_SPEC, "--image", str(missing), "--label", "x",
         "--threads", "1", "--out-image", str(tmp_path / "a"), "--out-label", str(tmp_path / "b")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: mv07: resample: cannot read header (")
    assert err[-1].endswith(f"({missing})")
    assert "Traceback" not in "\n".join(err)


def test_volume_ids_outside_mvNN_are_refused_before_any_work(capsys):
    try:
        main(
            ["resample", "../etc", "--spec", RESAMPLE_SPEC, "--image", "a", "--label", "b",
             "--threads", "1", "--out-image", "d", "--out-label", "e"]
        )  # fmt: skip
    except SystemExit as exc:
        assert exc.code == 2
    assert "volume id '../etc' is not allowed" in capsys.readouterr().err


def test_cli_start_up_imports_no_heavy_modules():
    code = (
        "import sys; import minivess_bundle.cli as c; c.build_parser();"
        "heavy = {'numpy', 'scipy', 'nibabel', 'skimage', 'httpx', 'torch', 'monai'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_is_the_package_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"minivess-bundle {__version__}"


def test_disk_full_is_one_line_naming_the_final_file(tmp_path, capsys):
    """A size-limited tmpfs as the output folder (needs root and mount rights, as in CI)."""
    import os
    import re
    import shutil

    from conftest import unavailable

    from minivess_bundle.core.spec import to_json
    from minivess_bundle.fetch.spec import FetchSpec

    if os.geteuid() != 0 or not shutil.which("mount"):
        unavailable("mounting a tmpfs needs root")
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full)]).returncode:
        unavailable("this machine does not allow mounting a tmpfs")
    try:
        code = main(
            [
                "fetch",
                "mv01",
                "--spec",
                to_json(
                    FetchSpec("synthetic", seed=1, size_xy=64, max_z=20, codec="isal", level=2)
                ),
                "--staging",
                str(full / "staging"),
                "--out-image",
                str(full / "renamed" / "imagesTr" / "mv01.nii.gz"),
                "--out-label",
                str(full / "renamed" / "labelsTr" / "mv01.nii.gz"),
                "--out-metadata",
                str(full / "renamed" / "metadata" / "mv01.json"),
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 1
        # the job's own staging folder (mv01.<random>) is named, then removed
        staged = re.escape(f"{full}/staging/mv01.") + r"[^/]+/raw/mv01\.nii\.gz"
        assert re.fullmatch(
            f"error: fetch: No space left on device while writing \\({staged}\\)", err
        )
        leftovers = [p.relative_to(full).as_posix() for p in full.rglob("*")]
        assert leftovers == ["staging"]  # no temporary, partial or staged file survives
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_flags_the_rules_pass_from_config_have_no_default_of_their_own():
    """The config schema is the only source of defaults: a stage's config values reach its
    command as one --spec whose dataclass has no default of its own (test_stage_spec), and
    every flag a rule fills from params is required by the CLI (or defaults to "nothing"),
    so a CLI default can never disagree with the schema's (the CLI said --size-xy 512 where
    config said 128)."""
    import re

    from conftest import REPO

    from minivess_bundle.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    checked = specs = 0
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for shell in re.findall(r'"(minivess-bundle [^"]*(?:"\s*"[^"]*)*)"', smk.read_text()):
            text = re.sub(r'"\s*"', "", shell)
            command = text.split()[1]
            actions = {o: a for a in commands[command]._actions for o in a.option_strings}
            for flag in re.findall(r"(--[a-z-]+)[ =]\{(?:params|threads)", text):
                action = actions[flag]
                assert action.required or action.default in ("", [], None), (
                    f"{smk.name}: {command} {flag} has its own default {action.default!r}"
                )
                checked += 1
                specs += flag == "--spec"
    assert specs == 16  # the 16 rules that pass config values pass them as one spec
    assert checked >= 40


def test_drift_writes_every_level_given_and_refuses_an_output_per_level_missing(tmp_path, capsys):
    """`drift --drift-level 1 3 5` (the drift rule's one job per (volume, kind)) writes one
    image, label and entry per level, in order; a level without its outputs is one line."""
    import json
    from pathlib import Path

    from minivess_bundle.core.spec import to_json
    from minivess_bundle.drift.spec import DriftSpec
    from minivess_bundle.fetch.synthetic import write_synthetic_volume

    clean = write_synthetic_volume(tmp_path / "clean", "mv05", seed=5, size_xy=24, max_z=8)
    out = tmp_path / "drift"
    stage = to_json(DriftSpec(seed=7, codec="isal", level=2))
    args = ["drift", "mv05", "--type", "intensity", "--image", clean["image"]]
    args += ["--label", clean["label"], "--spec", stage]
    paths = {
        flag: [str(out / str(level) / f"{name}") for level in (1, 3, 5)]
        for flag, name in (
            ("--out-image", "i.nii.gz"),
            ("--out-label", "l.nii.gz"),
            ("--entry", "e.json"),
        )
    }
    outputs = [item for flag, files in paths.items() for item in (flag, *files)]
    assert main([*args, "--drift-level", "1", "3", "5", *outputs]) == 0
    entries = [json.loads(Path(p).read_text()) for p in paths["--entry"]]
    assert [(e["level"], e["severity"]) for e in entries] == [(1, 0.2), (3, 0.6), (5, 1.0)]
    assert len({e["files"]["image"]["drifted"]["sha256"] for e in entries}) == 3
    capsys.readouterr()
    short = list(outputs)
    short.remove(paths["--out-image"][2])
    assert main([*args, "--drift-level", "1", "3", "5", *short]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: mv05: drift: 2 --out-image paths for 3 levels [1, 3, 5] — expected one "
        "--out-image per --drift-level, in the same order"
    ]


def test_drift_type_is_checked_against_the_kinds_loaded_only_for_a_drift_line(capsys):
    import pytest

    from minivess_bundle.cli import build_parser
    from minivess_bundle.drift.kinds import KINDS

    base = ["drift", "mv01", "--drift-level", "1", "--image", "i", "--label", "l"]
    base += ["--spec", "{}", "--out-image", "a"]
    base += ["--out-label", "b", "--entry", "e"]
    for kind in KINDS:
        assert build_parser().parse_args([*base, "--type", kind]).type == kind
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*base, "--type", "bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and all(repr(kind) in err for kind in KINDS)
    code = "import sys; from minivess_bundle.cli import build_parser; build_parser(); "
    code += "print('minivess_bundle.drift' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_every_job_runs_one_blas_thread_whatever_the_callers_environment():
    """A command's numpy starts one OpenBLAS thread, not one per core (~50-100 ms of CPU
    per job at import, and a large dot product sums in another order with another thread
    count), even where the caller exported more."""
    import os

    code = (
        "import os\n"
        "import minivess_bundle.cli\n"
        "import numpy\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'])\n"
        "rng = numpy.random.default_rng(0); x = rng.standard_normal(4_000_000)\n"
        "print(repr(float(numpy.dot(x, x))))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    single = subprocess.run(
        [sys.executable, "-c", "import numpy; rng = numpy.random.default_rng(0); "
         "x = rng.standard_normal(4_000_000); print(repr(float(numpy.dot(x, x))))"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    ).stdout.split()  # fmt: skip
    assert out == ["1", single[0]]
