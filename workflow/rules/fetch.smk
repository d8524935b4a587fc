"""Fetch: land each volume of the configured source under the names MONAI and nnU-Net
expect (imagesTr/mvNN.nii.gz, labelsTr/mvNN.nii.gz, metadata/mvNN.json), bytes untouched.
Every source lands in the EBRAINS layout (raw/, seg/ mvNN_y, json/) in a staging folder of
the job's own; the rename to the final names is a move inside the same job, so every
later stage is source-agnostic (minivess_bundle.fetch.rename)."""

# Under profiles/slurm the fetches run on the submit host (localrules): compute nodes often
# have no internet, and a fetch is I/O (a download or a copy), not CPU. So does validate
# (Snakefile): no submission is queued before the validation checkpoint.
if SOURCE != "ebrains":

    localrules:
        fetch,
        fetch_licence,

    rule fetch:
        """Land one volume from the synthetic generator, the local ZIP or a folder, renamed."""
        input:
            unpack(fetch_input),
        output:
            **layout.RENAMED,
        log:
            "logs/fetch/{vol}.log",
        benchmark:
            "benchmarks/fetch/{vol}.tsv"
        conda:
            ENV
        resources:
            mem_mb=fetch_mem_mb,
            runtime=20,
        params:
            spec=FETCH_SPEC,
            source_path=lambda wildcards: "" if SOURCE == "synthetic" else source_path(),
            staging=layout.STAGING_ROOT,
        shell:
            "minivess-bundle fetch {wildcards.vol} --spec {params.spec:q} "
            "--source-path={params.source_path:q} --staging {params.staging:q} "
            "--out-image {output.image:q} --out-label {output.label:q} "
            "--out-metadata {output.metadata:q} > {log:q} 2>&1"

    rule fetch_licence:
        """Land the source's licence file (the release's PDF, or the synthetic note) beside
        the renamed metadata."""
        input:
            unpack(fetch_input),
        output:
            layout.licence(LICENCE),
        log:
            "logs/fetch/licence.log",
        # First: it is tiny, and the bundle needs it (through the fingerprint too); left to
        # the greedy scheduler's tie-break it ran after the last drift job and held the
        # bundle back behind report_figures (bundle.smk).
        priority: 3
        conda:
            ENV
        resources:
            mem_mb=128,
            runtime=5,
        params:
            spec=FETCH_SPEC,
            source_path=lambda wildcards: "" if SOURCE == "synthetic" else source_path(),
            staging=layout.STAGING_ROOT,
        shell:
            "minivess-bundle fetch-licence --spec {params.spec:q} "
            "--source-path={params.source_path:q} --staging {params.staging:q} "
            "--out {output:q} > {log:q} 2>&1"


if SOURCE == "ebrains":

    localrules:
        ebrains_listing,
        fetch_ebrains,
        fetch_licence_ebrains,

    rule ebrains_listing:
        """List the EBRAINS dataset, check every requested volume is complete, keep the
        listing as provenance (sizes and hashes every download is verified against).
        """
        output:
            layout.EBRAINS_LISTING,
        log:
            "logs/fetch/ebrains_listing.log",
        conda:
            ENV
        resources:
            mem_mb=256,
            runtime=10,
            ebrains_connections=1,
        params:
            spec=EBRAINS_SPEC,
            volumes=VOLUMES,
        shell:
            "minivess-bundle ebrains-list --spec {params.spec:q} --volumes {params.volumes} "
            "--out {output:q} > {log:q} 2>&1"

    rule fetch_ebrains:
        """Download one volume (verified against the listing, resumable), land it renamed."""
        input:
            listing=layout.EBRAINS_LISTING,
        output:
            **layout.RENAMED,
        log:
            "logs/fetch/{vol}.log",
        benchmark:
            "benchmarks/fetch/{vol}.tsv"
        conda:
            ENV
        resources:
            mem_mb=256,
            runtime=60,
            ebrains_connections=1,
        params:
            spec=EBRAINS_SPEC,
            cache=lambda wildcards, input: str(Path(input.listing).parent),
            staging=layout.STAGING_ROOT,
        shell:
            "minivess-bundle ebrains-fetch {wildcards.vol} --listing {input.listing:q} "
            "--cache {params.cache:q} --spec {params.spec:q} --staging {params.staging:q} "
            "--out-image {output.image:q} --out-label {output.label:q} "
            "--out-metadata {output.metadata:q} > {log:q} 2>&1"

    rule fetch_licence_ebrains:
        """Download the release's licence file, land it beside the renamed metadata."""
        input:
            listing=layout.EBRAINS_LISTING,
        output:
            layout.licence(LICENCE),
        log:
            "logs/fetch/licence.log",
        # First: it is tiny, and the bundle needs it (through the fingerprint too); left to
        # the greedy scheduler's tie-break it ran after the last drift job and held the
        # bundle back behind report_figures (bundle.smk).
        priority: 3
        conda:
            ENV
        resources:
            mem_mb=256,
            runtime=10,
            ebrains_connections=1,
        params:
            spec=EBRAINS_SPEC,
            cache=lambda wildcards, input: str(Path(input.listing).parent),
            staging=layout.STAGING_ROOT,
        shell:
            "minivess-bundle ebrains-licence --listing {input.listing:q} "
            "--cache {params.cache:q} --spec {params.spec:q} --staging {params.staging:q} "
            "--out {output:q} > {log:q} 2>&1"


if SOURCE == "zip" and ZIP_URL:

    localrules:
        download_zip,

    rule download_zip:
        """Download the dataset ZIP once (verified, resumable); the zip source reads it."""
        output:
            downloaded_zip(),
        log:
            "logs/fetch/download_zip.log",
        conda:
            ENV
        resources:
            mem_mb=256,
            runtime=240,
            ebrains_connections=1,
        params:
            spec=DOWNLOAD_SPEC,
        shell:
            "minivess-bundle download-url --spec {params.spec:q} --out {output:q} "
            "> {log:q} 2>&1"
