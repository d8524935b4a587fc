"""Score drift detectors against the bundle's drift manifest.

One concern per module:

- :mod:`.sets`: what is compared: the bundle's clean volumes and the (kind, level) sets of
  its drift manifest, read as data, and how a sample of ``n`` units (patches) is drawn;
- :mod:`.roles`: the disjoint volume roles (training, reference, calibration, test) of each
  replication, rotated over folds;
- :mod:`.intervals`: the Wilson interval and a replicated rate's summary;
- :mod:`.features`: the fixed representations of a patch (intensity and texture features,
  a seeded random-projection embedding);
- :mod:`.detectors`: the reference detectors (KS + Bonferroni, MMD, classifier two-sample
  test, BBSD) and the plug-in interface for one's own (a Python function or a command);
- :mod:`.collect`: the units of a run: every clean patch and, for test volumes, the same
  patches of each in-process drift variant; the bundle's held-out files for harm;
- :mod:`.null`: the calibrated null: the rank p-value, what a null of ``V`` calibration
  volumes can reject, the false-alarm tolerance;
- :mod:`.protocol`: the config, sample sizes, repetitions, seeds, the null sets, controls
  and tests of every replication, the power / false-positive tables with intervals,
  written as ``drift_eval.json`` (schema-validated), and the per-unit Parquet table;
- :mod:`.harm`: the segmentation model the ``check`` target trains: its softmax outputs
  (BBSD) and its Dice / clDice on clean vs drifted volumes (harm labels);
- :mod:`.figures`: power curves, the false-alarm panel and the difficulty curve (PNG).
"""
