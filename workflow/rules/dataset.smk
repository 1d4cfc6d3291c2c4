if DATASET == "synthetic":

    rule synthetic_dataset:
        input:
            code=library("synthetic_dataset.py"),
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
        code=library("prepare_dataset.py"),
    output:
        directory(str(PREPARED)),
    log:
        "results/logs/prepare_dataset.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        require_full=DATASET == "market1501" and config["dataset"]["check_counts"],
    script:
        "../scripts/prepare_dataset.py"


if DATASET == "market1501" and not REAL_RAW.is_dir():

    rule extract_market:
        input:
            archive=str(REAL_ZIP),
            code=library("extract_market.py"),
        output:
            directory(str(REAL_RAW)),
        log:
            "results/logs/extract_market.log",
        conda:
            "../../envs/cpu.yaml"
        script:
            "../scripts/extract_market.py"


if DATASET == "market1501" and not REAL_ZIP.is_file() and config["dataset"]["url"]:

    rule download_market:
        input:
            code=library("fetch.py"),
        output:
            str(REAL_ZIP),
        log:
            "results/logs/download_market.log",
        conda:
            "../../envs/cpu.yaml"
        params:
            url=config["dataset"]["url"],
            sha256=config["dataset"]["sha256"],
        script:
            "../scripts/fetch.py"
