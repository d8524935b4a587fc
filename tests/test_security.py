"""Security: nothing from config or file contents reaches a shell unquoted unless the
schema confines it; volume ids are matched whole; TLS verification cannot be turned off."""

from __future__ import annotations

import re

import jsonschema
import pytest
from conftest import REPO

from minivess_bundle.core.config import schema
from minivess_bundle.core.errors import ConfigError
from minivess_bundle.core.volumes import check_volume_id, resolve_volumes

SCHEMA = schema()
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))

#: Every ``{params.X}`` a shell command uses without ``:q``, and the config value behind
#: it (schema path). The test below proves each is an enum, an anchored pattern or a
#: number in the schema, so no value the schema accepts can carry a space, quote,
#: semicolon or newline into the command line.
UNQUOTED_PARAMS = {
    "source": ("source",),
    "size_xy": ("synthetic", "size_xy"),
    "max_z": ("synthetic", "max_z"),
    "codec": ("compression", "codec"),
    "level": ("compression", "level"),
    "max_attempts": ("ebrains", "max_attempts"),
    "volumes": ("volumes",),
    "reference_ids": ("volumes",),  # validated volume ids (a subset of VOLUMES)
    "seed": ("seed",),
    "drift_levels": ("drift", "levels"),
    "version": ("bundle", "version"),
    "image_interpolator": ("resample", "image_interpolator"),
    "label_interpolator": ("resample", "label_interpolator"),
    "max_voxels": ("resample", "max_output_voxels"),
    "source_units": ("validate", "source_units"),
    "epoch": ("bundle", "source_date_epoch"),  # the environment's value goes through int()
    "bytes": ("zip", "bytes"),
    "on_invalid": ("validate", "on_invalid"),
    "quarantined": ("bundle", "quarantined"),
    "spacing": ("resample", "target_spacing_um"),  # "native" or three float() values
}
#: Wildcards used unquoted: each has a constraint in common.smk that admits no shell syntax.
WILDCARD_CONSTRAINTS = {"vol": "VOLUME_PATTERN", "drift": '"|".join(KINDS)', "level": 'r"\\d"'}


def _shell_strings(text: str) -> list[str]:
    """The string literals of each rule's ``shell:`` block."""
    blocks = re.findall(r"^\s+shell:\n((?:\s+(?:\(|\)|\".*\"|'.*')\s*\n)+)", text, re.M)
    return ["".join(re.findall(r"\"(.*?)\"", block)) for block in blocks]


def _schema_at(path: tuple[str, ...]) -> dict:
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    return node


def _confined(node: dict) -> bool:
    if "enum" in node or node.get("type") in ("integer", "number", "boolean"):
        return True
    if node.get("type") == "string":
        pattern = node.get("pattern", "")
        return pattern.startswith("^") and pattern.endswith("$") and " " not in pattern
    if node.get("type") == "array":
        return _confined(node["items"])
    if "oneOf" in node:
        return all(_confined(option) for option in node["oneOf"])
    return False


def test_shell_blocks_are_found_in_every_stage():
    found = {rule.stem: _shell_strings(rule.read_text()) for rule in RULES}
    for stage in ("fetch", "rename", "validate", "resample", "drift", "bundle"):
        assert found[stage], f"no shell command parsed in {stage}.smk"


def test_every_unquoted_param_in_a_shell_command_is_confined_by_the_schema():
    seen = set()
    for rule in RULES:
        for shell in _shell_strings(rule.read_text()):
            for name in re.findall(r"\{params\.(\w+)\}", shell):
                assert name in UNQUOTED_PARAMS, f"{rule.name}: {{params.{name}}} is not quoted"
                seen.add(name)
            for inp in re.findall(r"\{(input|output|log)(?:\.\w+)?\}", shell):
                pytest.fail(f"{rule.name}: a path placeholder {{{inp}...}} without :q")
    assert seen, "the parser found no params at all"
    for name in seen:
        node = _schema_at(UNQUOTED_PARAMS[name])
        assert _confined(node), f"{name}: schema {UNQUOTED_PARAMS[name]} admits free text"


def test_unquoted_wildcards_have_constraints_without_shell_syntax():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    block = common[common.index("wildcard_constraints:") :].split("\n\n")[0]
    for wildcard, constraint in WILDCARD_CONSTRAINTS.items():
        assert f"{wildcard}={constraint}," in block
    for rule in RULES:
        for shell in _shell_strings(rule.read_text()):
            for name in re.findall(r"\{wildcards\.(\w+)\}", shell):
                assert name in WILDCARD_CONSTRAINTS, f"{rule.name}: {{wildcards.{name}}}"


@pytest.mark.parametrize(
    "bad",
    ["mv01\n", "mv01; rm -rf ~", "mv1", "MV01", "mv٠١", "mv01 ", " mv01", "../mv01", "mv001"],
)
def test_volume_ids_are_matched_whole_and_ascii_only(bad):
    with pytest.raises(ConfigError, match="is not allowed"):
        check_volume_id(bad)
    with pytest.raises(ConfigError):
        resolve_volumes([bad])
    assert check_volume_id("mv07") == "mv07"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("source", "synthetic; touch pwned"),
        ("seed", "1; touch pwned"),
        ("compression", {"codec": "isal", "level": "2 && touch pwned"}),
        ("bundle", {"version": "0.1.0; touch pwned"}),
        ("resample", {"image_interpolator": "linear`touch pwned`"}),
        ("ebrains", {"max_attempts": "$(touch pwned)"}),
    ],
)
def test_config_values_with_shell_syntax_are_refused_by_the_schema(key, value):
    config = {key: value}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)


def test_tls_verification_is_never_switched_off():
    offenders = []
    for path in [*(REPO / "src").rglob("*.py"), *RULES, REPO / "Snakefile"]:
        text = path.read_text()
        for pattern in (r"verify\s*=\s*False", r"CERT_NONE", r"check_hostname\s*=\s*False"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(REPO)}: {pattern}")
    assert offenders == []
