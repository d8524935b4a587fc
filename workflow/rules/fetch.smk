"""Fetch: land each volume of the configured source in the EBRAINS staging layout
(raw/mvNN.nii.gz, seg/mvNN_y.nii.gz, json/mvNN.json), so every later stage is
source-agnostic."""

if SOURCE != "ebrains":

    rule fetch:
        """Land one volume from the synthetic generator, the local ZIP or a folder."""
        input:
            unpack(fetch_input),
        output:
            **staged("{vol}"),
        log:
            "logs/fetch/{vol}.log",
        benchmark:
            "benchmarks/fetch/{vol}.tsv"
        conda:
            ENV
        container:
            CONTAINER
        resources:
            mem_mb=fetch_mem_mb,
            runtime=20,
        params:
            source=SOURCE,
            source_path=lambda wildcards: "" if SOURCE == "synthetic" else source_path(),
            seed=config["seed"],
            size_xy=config["synthetic"]["size_xy"],
            max_z=config["synthetic"]["max_z"],
            codec=config["compression"]["codec"],
            level=config["compression"]["level"],
        shell:
            "minivess-bundle fetch {wildcards.vol} --source {params.source} "
            "--source-path={params.source_path:q} --seed {params.seed} "
            "--size-xy {params.size_xy} --max-z {params.max_z} "
            "--codec {params.codec} --level {params.level} "
            "--out-image {output.image:q} --out-label {output.label:q} "
            "--out-metadata {output.metadata:q} > {log:q} 2>&1"

    rule fetch_licence:
        """Land the source's licence file (the release's PDF, or the synthetic note)."""
        input:
            unpack(fetch_input),
        output:
            f"results/staging/{LICENCE}",
        log:
            "logs/fetch/licence.log",
        conda:
            ENV
        container:
            CONTAINER
        resources:
            mem_mb=128,
            runtime=5,
        params:
            source=SOURCE,
            source_path=lambda wildcards: "" if SOURCE == "synthetic" else source_path(),
        shell:
            "minivess-bundle fetch-licence --source {params.source} "
            "--source-path={params.source_path:q} --out {output:q} > {log:q} 2>&1"
