"""The config is checked first, one short line per problem, as a user sees it.

Unit tests of :mod:`minivess_bundle.core.config` (the schema as the one owner of defaults,
kind names against the registry, "did you mean" at its cutoff, duplicate YAML keys), then
real ``snakemake -n`` runs on a tiny config asserting on the printed text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from workflow_utils import make_workdir, run_snakemake

from minivess_bundle import settings
from minivess_bundle.core import config as cfg
from minivess_bundle.core.errors import ConfigError
from minivess_bundle.drift.kinds import KINDS

#: Folders of the checkout that hold no file of the project (tools, caches, outputs).
NOT_PROJECT = {".git", ".venv", ".snakemake", "results", "node_modules", ".pytest_cache"}


def repo_config() -> dict:
    return cfg.load_yaml(REPO / "config" / "config.yaml")


def problems(**changes) -> list[str]:
    config = repo_config()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    with pytest.raises(cfg.ConfigProblems) as caught:
        settings.validated(config)
    return str(caught.value).splitlines()


def leaves(block: dict, prefix: str = ""):
    for key, value in block.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        else:
            yield path, value


def test_every_yaml_file_of_the_repo_has_each_key_once():
    files = [
        path
        for pattern in ("*.yaml", "*.yml")
        for path in REPO.rglob(pattern)
        if not NOT_PROJECT & set(path.relative_to(REPO).parts)
    ]
    assert {"config.yaml", "config.schema.yaml"} <= {p.name for p in files}
    assert len(files) >= 5
    for path in files:
        cfg.load_yaml(path)  # raises ConfigError on a key given twice


def test_a_key_given_twice_names_both_lines_and_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("drift:\n  compound:\n    kinds: [a, b]\n  compound:\n    kinds: [c, d]\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load_yaml(path)
    assert str(caught.value) == (
        f"config: key 'compound' is given twice (lines 2 and 4) — expected each key "
        f"once per mapping ({path})"
    )


def test_config_yaml_restates_the_schema_defaults_and_nothing_else():
    """The schema owns every default: each value of config/config.yaml is its default
    (synthetic.size_xy is 128 in both; it was 512 in the schema)."""
    checked = 0
    for path, value in leaves(repo_config()):
        assert value == cfg.default(path), path
        checked += 1
    assert checked >= 55
    assert cfg.default("synthetic.size_xy") == 128
    assert repo_config()["drift"]["types"] == "all"


def test_defaults_fill_nested_blocks_and_keep_what_is_given():
    filled = cfg.with_defaults({"drift": {"levels": [2]}})
    assert filled["drift"]["levels"] == [2]
    assert filled["drift"]["gradual"] == {"base": "intensity", "n_batches": 3, "max_severity": 1.0}
    assert filled["seed"] == 20230301
    assert filled["drift_eval"]["difficulty"]["n"] == 5


def test_the_repo_config_has_no_problem():
    assert settings.check(cfg.with_defaults(repo_config())) == []


def test_an_unknown_key_gets_one_line_with_a_suggestion():
    assert problems(drfit=1) == ["config: unknown key 'drfit' (did you mean 'drift'?)"]
    assert problems(drift={"level": [1]}) == [
        "config: drift: unknown key 'level' (did you mean 'levels'?)"
    ]


def test_a_suggestion_needs_a_similarity_of_at_least_0_6():
    """difflib's ratio against 'drift': 'drixx' is 0.6 (suggested), 'drxxx' 0.4 (the
    known keys are listed instead)."""
    assert problems(drixx=1) == ["config: unknown key 'drixx' (did you mean 'drift'?)"]
    (line,) = problems(drxxx=1)
    assert line.startswith("config: unknown key 'drxxx' (keys: source, volumes, seed, ")
    assert "did you mean" not in line


def test_kind_names_are_checked_against_the_registry():
    (line,) = problems(drift={"types": ["intensity", "noize"]})
    assert line.startswith("config: drift.types[1]: 'noize' is not a drift kind (did you mean")
    assert f"(kinds: {', '.join(KINDS)})" in line
    assert problems(drift={"compound": {"kinds": ["noise", "topology"]}})[0].startswith(
        "config: drift.compound.kinds[1]: 'topology' is not an image kind (image kinds: "
    )
    assert problems(drift={"gradual": {"base": "prevalence"}}) == [
        "config: drift.gradual.base: 'prevalence' is not a single-volume kind"
    ]
    settings.validated({"drift": {"types": list(KINDS)}})  # every registered kind is accepted


def test_values_name_their_key_and_what_was_expected():
    assert problems(seed="7x", validate={"modality": "mircoscopy"}) == [
        "config: seed: '7x' is not an integer",
        "config: validate.modality: 'mircoscopy' is not one of microscopy, mri "
        "(did you mean 'microscopy'?)",
    ]
    assert problems(volumes="alll") == [
        "config: volumes: 'alll' — expected \"all\" (mv01..mv70) or a list of volume ids "
        "(did you mean 'all'?)"
    ]


def test_at_most_20_problems_are_listed_then_counted():
    exactly = problems(**{f"unknown{i:02d}": 1 for i in range(20)})
    assert len(exactly) == 20 and "more problems" not in exactly[-1]
    over = problems(**{f"unknown{i:02d}": 1 for i in range(21)})
    assert len(over) == 21 and over[-1] == "config: ... and 1 more problems"


def test_source_paths_are_named_by_their_config_key(tmp_path):
    missing = tmp_path / "d.zip"
    assert problems(source="zip", zip={"path": str(missing)}) == [
        f"config: zip.path: no such file '{missing}' (source: zip)"
    ]
    assert problems(source="zip")[0].startswith("config: zip.path is empty but source is 'zip'")
    assert problems(source="dir", dir={"path": str(missing)}) == [
        f"config: dir.path: no such folder '{missing}' (source: dir)"
    ]
    missing.write_bytes(b"PK")
    settings.validated({**repo_config(), "source": "zip", "zip": {"path": str(missing)}})


# --- as a user sees it: real snakemake runs ---------------------------------------------


def snakemake_text(workdir: Path, *args: str) -> tuple[int, str]:
    result = run_snakemake(workdir, "-n", "--cores", "1", *args, check=False)
    return result.returncode, result.stdout + result.stderr


def test_a_typo_in_the_config_is_one_line_with_a_suggestion(tmp_path):
    """`drfit` printed 1,097 lines of schema; now a handful, the first naming the key."""
    code, text = snakemake_text(make_workdir(tmp_path, drfit={"enabled": False}))
    assert code == 1
    assert "config: unknown key 'drfit' (did you mean 'drift'?)" in text.splitlines()
    assert len(text.splitlines()) <= 30
    assert "properties" not in text  # no schema dump


def test_a_missing_zip_is_named_by_its_key_before_any_rule(tmp_path):
    """It was first `MissingInputException in rule fetch_licence` about a licence PDF."""
    workdir = make_workdir(tmp_path, source="zip", zip={"path": "downloads/d.zip"})
    code, text = snakemake_text(workdir)
    assert code == 1
    assert "config: zip.path: no such file 'downloads/d.zip' (source: zip)" in text.splitlines()
    assert "MissingInputException" not in text and "fetch_licence" not in text
    assert len(text.splitlines()) <= 30


def test_an_unknown_drift_kind_on_the_command_line_is_named(tmp_path):
    workdir = make_workdir(tmp_path)
    code, text = snakemake_text(workdir, "--config", "drift={types: [noise, stripe]}")
    assert code == 1
    line = next(x for x in text.splitlines() if x.startswith("config: "))
    assert line.startswith("config: drift.types[1]: 'stripe' is not a drift kind")
    assert "(did you mean 'stripes'?)" in line


def test_the_config_command_checks_files_as_the_workflow_does(tmp_path, capsys):
    from minivess_bundle import cli

    assert cli.main(["config", str(REPO / "config" / "config.yaml")]) == 0
    assert capsys.readouterr().out == f"config: ok ({REPO / 'config' / 'config.yaml'})\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("drfit: {}\nseed: x\n")
    assert cli.main(["config", str(REPO / "config" / "config.yaml"), str(bad)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: config: unknown key 'drfit' (did you mean 'drift'?)",
        "error: config: seed: 'x' is not an integer",
    ]


def test_the_printed_defaults_are_a_valid_config_equal_to_the_schemas(tmp_path, capsys):
    import yaml

    from minivess_bundle import cli

    assert cli.main(["config", "--defaults"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == cfg.default("") and printed["synthetic"]["size_xy"] == 128
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(printed))
    assert cli.main(["config", str(path)]) == 0
