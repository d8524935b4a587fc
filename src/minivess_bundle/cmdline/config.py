"""``minivess-bundle config``: check config files the way the workflow does, or show defaults.

``minivess-bundle config config/config.yaml [more.yaml ...]`` merges the files (later
ones win, block by block, as Snakemake's ``--configfile``), then prints one line per
problem (exit 1) or ``config: ok``. ``--defaults`` prints the schema's defaults as YAML.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``config`` on the CLI's subparsers."""
    parser = subparsers.add_parser("config", help="check config files or show the defaults")
    parser.add_argument("files", nargs="*", help="config files (YAML), merged in order")
    parser.add_argument("--defaults", action="store_true", help="print the schema's defaults")
    parser.set_defaults(func=main)
    return parser


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def main(args: argparse.Namespace) -> int:
    """Print the defaults, or check the files: one line per problem (exit 1) or ok."""
    import sys

    from ..core.config import ConfigProblems, default, load_yaml
    from ..settings import validated

    if args.defaults:
        import yaml

        print(yaml.safe_dump(default(""), sort_keys=False), end="")
        return 0
    config: dict = {}
    for path in args.files:
        config = _merge(config, load_yaml(path) or {})
    try:
        validated(config)
    except ConfigProblems as problems:
        for line in str(problems).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    print(f"config: ok ({', '.join(args.files) or 'defaults only'})")
    return 0
