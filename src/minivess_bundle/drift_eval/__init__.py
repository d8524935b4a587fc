"""Score drift detectors against the bundle's drift manifest.

One concern per module:

- :mod:`.sets`: what is compared: the bundle's reference (clean training-split volumes),
  held-out clean volumes and drift variants, read as data from the drift manifest, and
  how a sample of ``n`` units (patches) is drawn from them;
- :mod:`.features`: the fixed representations of a patch (intensity and texture features,
  a seeded random-projection embedding);
- :mod:`.detectors`: the reference detectors (KS + Bonferroni, MMD, classifier two-sample
  test, BBSD) and the plug-in interface for one's own (a Python function or a command);
- :mod:`.protocol`: sample sizes, repetitions, seeds, the calibrated null and the
  power / false-positive tables, written as ``drift_eval.json`` (schema-validated);
- :mod:`.harm`: the segmentation model the ``check`` target trains: its softmax outputs
  (BBSD) and its Dice / clDice on clean vs drifted volumes (harm labels);
- :mod:`.figures`: power curves, the false-alarm panel and the difficulty curve (PNG).
"""
