#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) right after it creates envs/train.yaml's environment,
# with that environment active: installs this workflow's package, minivess-bundle (the
# command every rule calls), without dependencies (the env file pins them all).
#
# Snakemake runs this from the run directory (--directory, default: where you started
# snakemake). From a clone of the repository that is the source; otherwise point
# MINIVESS_BUNDLE_SRC at the clone: MINIVESS_BUNDLE_SRC=/path/to/minivess-bundle snakemake ...
set -euo pipefail
src=${MINIVESS_BUNDLE_SRC:-$PWD}
if [ ! -f "$src/pyproject.toml" ] || [ ! -d "$src/src/minivess_bundle" ]; then
  echo "minivess.post-deploy.sh: $src is not a minivess-bundle clone;" \
    "set MINIVESS_BUNDLE_SRC to the repository holding pyproject.toml" >&2
  exit 1
fi
python -m pip install --no-deps --no-input "$src"
