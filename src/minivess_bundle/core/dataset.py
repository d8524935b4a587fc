"""The MiniVess dataset's identity: the one place its id, title, authors, DOI, licence,
citation and nnU-Net dataset id are spelled.

Every writer reads them from here: bag-info and the datasheet (:mod:`.bundle.describe`,
:mod:`.bundle.datasheet`), the RO-Crate (:mod:`.bundle.rocrate`), Croissant
(:mod:`.croissant`), the sets' ``dataset.json``, the nnU-Net export, the EBRAINS download
and the synthetic source's attribution note. The datasheet's usage text (how to load a
bundle in MONAI and train nnU-Net on it) lives here too, so the bag's writer never
imports its readers.
"""

from __future__ import annotations

NAME = "MiniVess"
TITLE = (
    "A dataset of rodent cerebrovasculature from in vivo multiphoton fluorescence "
    "microscopy imaging"
)
#: The named authors, in order (the paper lists more: "et al.").
AUTHORS = ("Charissa Poon", "Petteri Teikari")
#: The named authors as "<family name> <initial>.," then "et al.".
AUTHORS_SHORT = " ".join(f"{a.split()[-1]} {a.split()[0][0]}.," for a in AUTHORS) + " et al."
JOURNAL = "Scientific Data"
VOLUME, ARTICLE, YEAR = 10, 141, 2023
DOI = "10.1038/s41597-023-02048-8"
DOI_URL = f"https://doi.org/{DOI}"
#: The EBRAINS Knowledge Graph id of the release (its ZIP is ``d-<id>.zip``).
EBRAINS_ID = "bf268b89-1420-476b-b428-b85a913eb523"
EBRAINS_URL = f"https://search.kg.ebrains.eu/instances/{EBRAINS_ID}"
EBRAINS_ZIP = f"d-{EBRAINS_ID}.zip"
LICENCE = "CC BY-NC-SA 4.0"
LICENCE_SPDX = "CC-BY-NC-SA-4.0"
LICENCE_NAME = "Creative Commons Attribution-NonCommercial-ShareAlike 4.0"
LICENCE_URL = "https://creativecommons.org/licenses/by-nc-sa/4.0/"
JOURNAL_REF = f"{JOURNAL} {VOLUME}, {ARTICLE} ({YEAR})"
CITATION = f"{AUTHORS_SHORT} {TITLE}. {JOURNAL_REF}. doi:{DOI}"
#: The named authors' family names, the journal and the year, for running text.
CITATION_SHORT = (
    f"{', '.join(a.split()[-1] for a in AUTHORS)} et al., {JOURNAL} {VOLUME}, {ARTICLE}, {YEAR}"
)
BIBTEX = (
    "@article{poon2023minivess,\n"
    f"  author = {{{' and '.join(', '.join(reversed(a.split(maxsplit=1))) for a in AUTHORS)}"
    " and others},\n"
    f"  title = {{{TITLE}}},\n"
    f"  journal = {{{JOURNAL}}}, volume = {{{VOLUME}}}, pages = {{{ARTICLE}}}, "
    f"year = {{{YEAR}}},\n"
    f"  doi = {{{DOI}}}\n}}"
)
#: The nnU-Net v2 dataset id and folder name the export uses by default.
NNUNET_ID = 501
NNUNET_NAME = f"Dataset{NNUNET_ID:03d}_{NAME}"
#: Mask values and the one image channel, as every dataset.json states them.
LABELS = {"background": 0, "vessel": 1}
CHANNEL_NAMES = {"0": "two-photon"}

#: The identity as one mapping (bag-info, the datasheet and dataset.json read it).
IDENTITY = {
    "name": NAME,
    "title": TITLE,
    "authors": AUTHORS_SHORT,
    "journal": JOURNAL_REF,
    "doi": DOI,
    "ebrains_id": EBRAINS_ID,
    "licence": LICENCE,
    "licence_url": LICENCE_URL,
}

#: How to load a bundle in MONAI: the datasheet's usage text (``.format(bundle=...)``).
MONAI_SNIPPET = """\
from monai.data import CacheDataset, DataLoader, load_decathlon_datalist
from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, RandCropByPosNegLabeld,
                              ScaleIntensityRangePercentilesd, SpatialPadd)

files = load_decathlon_datalist("{bundle}/data/dataset.json", is_segmentation=True,
                                data_list_key="training")
patch = (64, 64, 16)
transforms = Compose([
    LoadImaged(keys=["image", "label"]),
    EnsureChannelFirstd(keys=["image", "label"]),
    ScaleIntensityRangePercentilesd(keys="image", lower=1.0, upper=99.9, b_min=0.0, b_max=1.0,
                                    clip=True),
    SpatialPadd(keys=["image", "label"], spatial_size=patch),
    RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=patch,
                           pos=1, neg=1, num_samples=2),
])
loader = DataLoader(CacheDataset(files, transforms, cache_rate=1.0), batch_size=2, shuffle=True)
batch = next(iter(loader))
print(batch["image"].shape, batch["label"].shape)  # (4, 1, 64, 64, 16) twice
"""

#: How to train nnU-Net v2 on a bundle: the datasheet's usage text (``.format(bundle=...)``).
NNUNET_SNIPPET = """\
export nnUNet_raw="$PWD/nnUNet_raw" nnUNet_preprocessed="$PWD/nnUNet_preprocessed" \\
       nnUNet_results="$PWD/nnUNet_results"
python -c "from minivess_bundle.consumers.nnunet import export_nnunet; \\
export_nnunet('{bundle}', '$nnUNet_raw', dataset_id={nnunet_id})"
nnUNetv2_plan_and_preprocess -d {nnunet_id} --verify_dataset_integrity
cp "$nnUNet_raw/{nnunet_name}/splits_final.json" \
   "$nnUNet_preprocessed/{nnunet_name}/"  # the authors' 3 folds: train 0, 1 or 2
nnUNetv2_train {nnunet_id} 3d_fullres 0
""".replace("{nnunet_id}", str(NNUNET_ID)).replace("{nnunet_name}", NNUNET_NAME)
