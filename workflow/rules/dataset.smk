if DATASET == "synthetic":

    rule synthetic_dataset:
        output:
            directory(str(RAW)),
        params:
            sizes=stable(config["dataset"]["synthetic"]),
        log:
            "results/logs/synthetic_dataset.log",
        conda:
            "../../envs/cpu.yaml"
        script:
            "../scripts/synthetic_dataset.py"


rule prepare_dataset:
    input:
        raw=str(RAW),
        code=library("market.py"),
    output:
        str(PREPARED_MARKER),
    params:
        prepared=str(PREPARED),
        require_full=DATASET == "market1501" and config["dataset"]["check_counts"],
    log:
        "results/logs/prepare_dataset.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/prepare_dataset.py"
