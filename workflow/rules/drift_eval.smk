"""Drift evaluation: score drift detectors against the verified bundle's drift manifest.
Not part of `all`: `snakemake --cores 2 drift_eval` (BBSD and harm use the reference UNet
that drift_eval_reference trains once: torch/MONAI from the `train` extra)."""


rule drift_eval_reference:
    """Train the reference UNet on the training role and fit the vesselness threshold (cached)."""
    input:
        bag=BUNDLE["bag_manifest"],
        verified=BUNDLE["verified"],
    output:
        weights=layout.DRIFT_EVAL_REFERENCE_WEIGHTS,
        record=layout.DRIFT_EVAL_REFERENCE_RECORD,
    log:
        "logs/drift_eval/reference.log",
    benchmark:
        "benchmarks/drift_eval/reference.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        bag=lambda wildcards, input: str(Path(input.bag).parent),
        spec=DRIFT_EVAL_REFERENCE_SPEC,
        cache=layout.DRIFT_EVAL_REFERENCE_CACHE,
    shell:
        "minivess-bundle drift-eval-reference {params.bag:q} --weights-out {output.weights:q} "
        "--record-out {output.record:q} --spec {params.spec:q} "
        "--threads {threads} --cache-dir {params.cache:q} > {log:q} 2>&1"


rule drift_eval_score:
    """Power and false alarms (with intervals) of every detector on rotating volume roles,
    harm, and the per-unit feature table."""
    input:
        bag=BUNDLE["bag_manifest"],
        verified=BUNDLE["verified"],
        model=layout.DRIFT_EVAL_REFERENCE_WEIGHTS,
        reference=layout.DRIFT_EVAL_REFERENCE_RECORD,
    output:
        result=layout.DRIFT_EVAL,
        features=layout.DRIFT_EVAL_FEATURES,
        power=report(
            layout.DRIFT_EVAL_POWER_PNG,
            category="Drift evaluation",
            caption="../report/drift_eval_power.rst",
            labels={"figure": "power curves"},
        ),
        fpr=report(
            layout.DRIFT_EVAL_FPR_PNG,
            category="Drift evaluation",
            caption="../report/drift_eval_fpr.rst",
            labels={"figure": "false alarms"},
        ),
        difficulty=report(
            layout.DRIFT_EVAL_DIFFICULTY_PNG,
            category="Drift evaluation",
            caption="../report/drift_eval_difficulty.rst",
            labels={"figure": "difficulty"},
        ),
    log:
        "logs/drift_eval/drift_eval.log",
    benchmark:
        "benchmarks/drift_eval/drift_eval.tsv"
    conda:
        "../../envs/train.yaml"
    # one thread (torch too): on 2 cores it runs beside drift_eval_label_harm
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        bag=lambda wildcards, input: str(Path(input.bag).parent),
        spec=DRIFT_EVAL_SPEC,
    shell:
        "minivess-bundle drift-eval {params.bag:q} --model {input.model:q} "
        "--reference-record {input.reference:q} --spec {params.spec:q} "
        "--out {output.result:q} --features {output.features:q} "
        "--power-png {output.power:q} --fpr-png {output.fpr:q} "
        "--difficulty-png {output.difficulty:q} > {log:q} 2>&1"


rule drift_eval_label_harm:
    """The label-only kinds' harm: the reference UNet fine-tuned on drifted vs clean masks."""
    input:
        bag=BUNDLE["bag_manifest"],
        verified=BUNDLE["verified"],
        weights=layout.DRIFT_EVAL_REFERENCE_WEIGHTS,
        record=layout.DRIFT_EVAL_REFERENCE_RECORD,
    output:
        layout.DRIFT_EVAL_LABEL_HARM,
    log:
        "logs/drift_eval/label_harm.log",
    benchmark:
        "benchmarks/drift_eval/label_harm.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        bag=lambda wildcards, input: str(Path(input.bag).parent),
        spec=DRIFT_EVAL_LABEL_HARM_SPEC,
    shell:
        "minivess-bundle drift-eval-label-harm {params.bag:q} --weights {input.weights:q} "
        "--record {input.record:q} --out {output:q} --spec {params.spec:q} "
        "--threads {threads} > {log:q} 2>&1"


rule drift_eval:
    """The drift evaluation's result and figures, and the label-only kinds' harm."""
    input:
        rules.drift_eval_score.output,
        layout.DRIFT_EVAL_LABEL_HARM,
