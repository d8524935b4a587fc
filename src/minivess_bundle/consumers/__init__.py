"""What reads the bundle: MONAI datalists and loaders (:mod:`.monai`), the nnU-Net export
(:mod:`.nnunet`), OME-Zarr copies (:mod:`.omezarr`), the training smoke test
(:mod:`.train_smoke`) and the pair discovery they share (:mod:`.loader`). Nothing in the
pipeline imports these; torch and MONAI are imported inside the functions that need them."""
