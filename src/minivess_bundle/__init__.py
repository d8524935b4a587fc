"""minivess-bundle: a verified, reproducible data bundle of the MiniVess dataset.

The package holds the logic of every workflow stage as plain functions on paths
and arrays; the Snakemake rules only call its command line (``minivess-bundle``).
Importing the package is cheap on purpose: heavy modules are imported by the
stage that needs them.
"""

__version__ = "0.1.0"
