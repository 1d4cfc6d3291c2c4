if DATASET == "synthetic":

    rule synthetic_dataset:
        output:
            directory(str(RAW)),
        log:
            "results/logs/synthetic_dataset.log",
        conda:
            "../../envs/cpu.yaml"
        params:
            sizes=stable(config["dataset"]["synthetic"]),
        script:
            "../scripts/synthetic_dataset.py"


rule prepare_dataset:
    input:
        raw=str(RAW),
        code=library("market.py"),
    output:
        str(PREPARED_MARKER),
    log:
        "results/logs/prepare_dataset.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        require_full=DATASET == "market1501" and config["dataset"]["check_counts"],
    script:
        "../scripts/prepare_dataset.py"
