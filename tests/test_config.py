"""Command-line config values get the schema's types (nested --config values arrive as strings)."""

from __future__ import annotations

import pytest
from jsonschema import validate

from minivess_bundle.core.config import OUTSIDE_BAG, coerce, recorded, schema

SCHEMA = schema()


def test_nested_strings_become_the_schema_types():
    given = {
        "drift": {"enabled": "false", "levels": ["1", "3"], "gradual": {"n_batches": "2"}},
        "resample": {"target_spacing_um": ["1", "0.5", "2e0"]},
        "seed": "7",
        "volumes": ["mv01", "mv02"],
        "bundle": {"version": "0.2.0", "raw": "True"},
    }
    assert coerce(given, SCHEMA) == {
        "drift": {"enabled": False, "levels": [1, 3], "gradual": {"n_batches": 2}},
        "resample": {"target_spacing_um": [1.0, 0.5, 2.0]},
        "seed": 7,
        "volumes": ["mv01", "mv02"],
        "bundle": {"version": "0.2.0", "raw": True},
    }


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"drift": {"enabled": "flase"}}, "enabled"),  # a typo stays a string: the schema says so
        ({"drift": {"levels": ["1.5"]}}, "levels"),  # not an integer
        ({"seed": "7x"}, "seed"),
    ],
)
def test_ambiguous_strings_are_left_for_the_schema_to_refuse(given, key):
    coerced = coerce(given, SCHEMA)
    assert coerced == given
    with pytest.raises(Exception, match="is not of type"):
        validate(coerced, SCHEMA)


def test_strings_the_schema_wants_as_strings_stay_strings():
    given = {"volumes": "all", "resample": {"target_spacing_um": "native"}, "zip": {"md5": "123"}}
    assert coerce(given, SCHEMA) == given


def test_the_recorded_config_leaves_out_only_the_keys_outside_the_bag():
    config = {"seed": 1, "drift": {"enabled": True}, "drift_eval": {"alpha": 0.05}}
    config["ome_zarr"] = {"enabled": False}
    config["reference_model"] = {"device": "auto"}
    assert recorded(config) == {"seed": 1, "drift": {"enabled": True}}
    assert set(config) - set(recorded(config)) == set(OUTSIDE_BAG)
