"""The small core every stage uses, importing none of them: NIfTI I/O (:mod:`.nifti`), atomic
deterministic writes (:mod:`.fsio`), where every file lives (:mod:`.layout`), config typing
(:mod:`.config`), the one error family (:mod:`.errors`), volume ids (:mod:`.volumes`), the
authors' folds (:mod:`.splits`) and the image figures the stages share (:mod:`.metrics`,
:mod:`.morphology`)."""
