"""Fetch and rename (``workflow/rules/fetch.smk``, ``rename.smk``): the sources (:mod:`.sources`:
ZIP, folder, synthetic; :mod:`.ebrains`: the data-proxy), the embedded synthetic generator
(:mod:`.synthetic`, :mod:`.calibration`) and the rename into imagesTr/labelsTr/metadata
(:mod:`.rename`)."""
