"""One spec per stage: each rule passes one JSON spec the package builds from the config and
the command reads back; a stage parameter is spelled as a config key and a dataclass field."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO

from minivess_bundle import cli
from minivess_bundle.bundle.release import ReleaseSpec, Section, release_spec
from minivess_bundle.core import spec
from minivess_bundle.core.config import recorded
from minivess_bundle.core.errors import ConfigError
from minivess_bundle.drift.spec import DriftSpec
from minivess_bundle.drift_eval.spec import DriftEvalSpec, LabelHarmSpec, ReferenceSpec
from minivess_bundle.fetch.spec import DownloadSpec, EbrainsSpec, FetchSpec
from minivess_bundle.resample import ResampleSpec
from minivess_bundle.settings import validated
from minivess_bundle.validate.spec import ValidateSpec

#: Every stage spec built from the config alone, and the commands that read it (--spec).
STAGE_SPECS = {
    FetchSpec: ("fetch", "fetch-licence"),
    EbrainsSpec: ("ebrains-list", "ebrains-fetch", "ebrains-licence"),
    DownloadSpec: ("download-url",),
    ValidateSpec: ("validate", "validation-report"),
    ResampleSpec: ("resample",),
    DriftSpec: ("drift", "drift-select"),
    ReferenceSpec: ("drift-eval-reference",),
    DriftEvalSpec: ("drift-eval",),
    LabelHarmSpec: ("drift-eval-label-harm",),
}


def files() -> dict:
    return {
        "raw": ["results/renamed/metadata/LICENCE.txt", "results/renamed/imagesTr/mv01.nii.gz"],
        "processed": ["results/processed/imagesTr/mv01.nii.gz"],
        "records": ["results/processed/metadata/mv01.resample.json"],
        "drift": [],
        "quarantine": [],
        "drift_manifest": "",
    }


def built(environ=None, **config_changes) -> ReleaseSpec:
    config = validated({**config_changes})
    return release_spec(
        config,
        files(),
        out_dir="results/bundle",
        summary="results/bundle/minivess-0.1.0.json",
        validation_report="results/validation/report.json",
        lock="requirements/lock.txt",
        git_commit="abc",
        threads=2,
        environ=environ or {},
    )


def test_the_spec_is_built_from_the_config_and_round_trips_through_json():
    release = built()
    assert release.version == "0.1.0" and release.quarantined == "omit"
    assert release.archive is False and release.threads == 2
    assert release.source_date_epoch == 1677628800
    assert release.raw == Section("results/renamed", tuple(files()["raw"]))
    assert release.processed == Section("results/processed", tuple(files()["processed"]))
    assert release.drift is None and release.quarantine is None  # no files: left out
    assert release.config == recorded(validated({}))
    assert release.stages["validate"]["on_invalid"] == "quarantine"
    text = spec.to_json(release)
    assert spec.read(ReleaseSpec, text) == release
    assert json.loads(text)["stage"] == "bundle"
    assert spec.to_json(built()) == text  # same config and files: the same bytes


def test_source_date_epoch_from_the_environment_wins():
    assert built(environ={"SOURCE_DATE_EPOCH": "1700000000"}).source_date_epoch == 1700000000
    assert built(bundle={"archive": True}).archive is True


def test_a_spec_of_another_stage_or_with_an_unknown_field_is_one_clear_error(tmp_path):
    text = spec.to_json(built())
    other = text.replace('"stage":"bundle"', '"stage":"resample"')
    with pytest.raises(ConfigError, match="spec of stage 'resample' — expected a 'bundle' spec"):
        spec.read(ReleaseSpec, other)
    data = json.loads(text)
    data["spec"]["bundle_version"] = "0.1.0"
    with pytest.raises(ConfigError, match=r"bundle spec: unknown fields \['bundle_version'\]"):
        spec.read(ReleaseSpec, json.dumps(data))
    path = tmp_path / "spec.json"
    path.write_text(text)
    assert spec.read(ReleaseSpec, f"@{path}") == built()


def test_the_cli_turns_a_bad_spec_into_one_line(capsys):
    assert cli.main(["bundle", "--spec", "{not json", "--threads", "1", "--lock", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config: spec is not JSON (") and "\n" not in err


def test_the_bundle_rule_passes_one_spec_and_its_threads():
    """It took 23 flags and carried the whole config as JSON twice. The spec is a params
    function of the wildcards only, the kind Snakemake compares with the last run, so a
    config change reruns the bundle (the job's threads go beside it)."""
    text = (REPO / "workflow" / "rules" / "bundle.smk").read_text()
    rule = text[text.index("rule bundle:") : text.index("rule verify_bundle")]
    params = rule[rule.index("    params:") : rule.index("    shell:")]
    assert re.findall(r"^        (\w+)=", params, re.M) == ["spec"]
    assert '"minivess-bundle bundle --spec {params.spec:q} --lock {input.lock:q} "' in rule
    assert '"--threads {threads} > {log:q} 2>&1"' in rule
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "def bundle_spec(wildcards):" in common


def test_the_cli_imports_no_stage_module_until_a_command_runs():
    """Job start-up stays small: `minivess-bundle --help` imports no stage module."""
    code = (
        "import sys, minivess_bundle.cli as c; c.build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('minivess_bundle')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(out.stdout))  # noqa: S307 - our own repr of a list of names
    commands = {m for m in loaded if m.startswith("minivess_bundle.cmdline.")}
    assert {"minivess_bundle.cmdline.bundle", "minivess_bundle.cmdline.fetch"} <= commands
    assert loaded - commands == {
        "minivess_bundle",
        "minivess_bundle.cli",
        "minivess_bundle.cmdline",
        "minivess_bundle.core",  # the package of core.errors: a docstring, no imports
        "minivess_bundle.core.errors",
        # validate-crate's choices (severities, profile) are owned by the crate module,
        # which imports the standard library only
        "minivess_bundle.consumers",
        "minivess_bundle.consumers.crate",
    }, loaded


def test_the_validate_rules_are_the_block_without_its_policy_and_the_record_is_whole():
    from minivess_bundle.bundle.release import stage_record
    from minivess_bundle.core.config import schema

    config = validated({"validate": {"on_invalid": "fail", "foreground_fraction": [0.01, 0.4]}})
    stage = ValidateSpec.from_config(config)
    keys = set(schema()["properties"]["validate"]["properties"])
    assert set(stage.rules()) == keys - {"on_invalid"}
    assert stage.rules()["foreground_fraction"] == [0.01, 0.4] and stage.on_invalid == "fail"
    assert spec.read(ValidateSpec, spec.to_json(stage)) == stage
    record = stage_record(config)
    assert record["validate"] == config["validate"] and record["validate"]["on_invalid"] == "fail"
    assert record["drift"] == config["drift"] and record["fetch"] == {"source": "synthetic"}


def test_a_drift_job_reads_no_yaml_at_start_up():
    """The plan's defaults come from the schema when first asked for: importing the drift
    package (every drift job does) loads neither PyYAML nor jsonschema."""
    code = (
        "import sys, minivess_bundle.drift, minivess_bundle.cli; "
        "print(sorted({'yaml', 'jsonschema', 'difflib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_resample_spec_fields_are_the_config_keys_and_round_trip():
    """ResampleSpec's fields are the schema's keys (resample block, validate.source_units,
    compression block): a key added to one and not the other fails here, by name."""
    import dataclasses

    from minivess_bundle.core.config import schema
    from minivess_bundle.resample import ResampleSpec

    properties = schema()["properties"]
    keys = {
        *properties["resample"]["properties"],
        "source_units",
        *properties["compression"]["properties"],
    }
    assert {f.name for f in dataclasses.fields(ResampleSpec)} == keys
    config = validated({"resample": {"target_spacing_um": [0.5, 0.5, 2]}})
    stage = ResampleSpec.from_config(config)
    assert stage.target_spacing_um == (0.5, 0.5, 2.0) and stage.source_units == "um"
    assert spec.read(ResampleSpec, spec.to_json(stage)) == stage
    native = ResampleSpec.from_config(validated({"resample": {"target_spacing_um": "native"}}))
    assert spec.read(ResampleSpec, spec.to_json(native)).target_spacing_um == "native"
    rule = (REPO / "workflow" / "rules" / "resample.smk").read_text()
    assert re.findall(r"^        (\w+)=", rule[rule.index("    params:") :], re.M)[:1] == ["spec"]


def _config_values(config, path=()):
    """(path, value) of every key of the validated config, nested blocks included."""
    for key, value in config.items():
        yield (*path, key), value
        if isinstance(value, dict):
            yield from _config_values(value, (*path, key))


def test_every_spec_field_is_a_config_key_and_carries_its_value():
    """Each field is named as a config key and holds that key's value (a config with no
    default left in these blocks, so a field fed from the wrong key fails here), and has no
    default of its own: the schema is the only source of defaults."""
    import dataclasses

    config = validated(
        {
            "seed": 7,
            "synthetic": {"size_xy": 40, "max_z": 9},
            "compression": {"codec": "zlib", "level": 6},
            "validate": {"on_invalid": "fail", "foreground_fraction": [0.02, 0.3]},
            "zip": {"bytes": 123, "md5": "0" * 32},
            "ebrains": {"dataset_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "max_attempts": 3},
            "resample": {"target_spacing_um": [0.5, 0.5, 2.0], "max_output_voxels": 10},
            "reference_model": {"device": "cpu", "settings": {"max_steps": 3}},
            "drift_eval": {"harm_crop": [32, 32, 16], "alpha": 0.01},
        }
    )
    values = {}
    for path, value in _config_values(config):
        values.setdefault(path[-1], []).append(json.dumps(value))
    for cls in STAGE_SPECS:
        stage = cls.from_config(config)
        for field in dataclasses.fields(cls):
            assert field.name in values, f"{cls.__name__}.{field.name} is no config key"
            assert field.default is field.default_factory is dataclasses.MISSING, field.name
            held = json.dumps(getattr(stage, field.name))
            assert held in values[field.name], (cls.__name__, field.name, held)
        assert spec.read(cls, spec.to_json(stage)) == stage


def _rules() -> dict[str, str]:
    """Every rule's (and checkpoint's) text, by name, from workflow/rules/*.smk."""
    rules = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^\s*(?:rule|checkpoint) (\w+):\n", smk.read_text(), flags=re.M)
        rules.update(zip(parts[1::2], parts[2::2], strict=True))
    return rules


def _block(rule: str, directive: str) -> str:
    """One directive's lines of a rule (``params``, ``shell``), "" when it has none."""
    match = re.search(rf"^(\s+){directive}:\n((?:\1\s+.*\n)*)", rule, re.M)
    return match[2] if match else ""


def test_no_stage_parameter_is_spelled_again_as_a_flag_or_a_rule_param():
    """The third spelling the specs removed: no command that reads a spec takes one of its
    fields as an option, and no rule calling it passes one as a param, a flag or a config
    lookup: the rule's params hold ``spec`` and per-job facts, its shell ``--spec``."""
    import dataclasses

    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    passing = set()
    for cls, names in STAGE_SPECS.items():
        fields = {field.name for field in dataclasses.fields(cls)}
        for name in names:
            options = {a.dest for a in commands[name]._actions} - {"help"}
            assert "spec" in options and not options & fields, (name, options & fields)
        for rule_name, rule in _rules().items():
            shell = re.sub(r'"\s*"', "", _block(rule, "shell"))
            called = re.search(r"minivess-bundle ([a-z-]+)", shell)
            if not called or called[1] not in names:
                continue
            params = _block(rule, "params")
            given = set(re.findall(r"^\s+(\w+)=", params, re.M))
            flags = {flag[2:].replace("-", "_") for flag in re.findall(r"--[a-z-]+", shell)}
            assert "spec" in given and "--spec {params.spec:q}" in shell, rule_name
            assert not (given | flags) & fields, (rule_name, (given | flags) & fields)
            assert "config[" not in params, rule_name
            passing.add(rule_name)
    assert passing == {
        "fetch",
        "fetch_licence",
        "ebrains_listing",
        "fetch_ebrains",
        "fetch_licence_ebrains",
        "download_zip",
        "validate",
        "validation_report",
        "resample",
        "drift",
        "drift_gradual",
        "drift_select",
        "drift_eval_reference",
        "drift_eval_score",
        "drift_eval_label_harm",
    }


def test_no_rule_passes_several_config_values_outside_a_spec():
    """A rule whose command takes two or more config values takes them as one spec: at most
    one ``config[...]`` lookup in any rule's params (train_smoke's seed, fingerprint's strict)."""
    lookups = {
        name: re.findall(r"config\[[^\]]+\](?:\[[^\]]+\])*", _block(rule, "params"))
        for name, rule in _rules().items()
    }
    assert {name: found for name, found in lookups.items() if len(found) > 1} == {}
    assert lookups["train_smoke"] == ['config["seed"]']
    assert lookups["fingerprint"] == ['config["fingerprint"]["strict"]']
