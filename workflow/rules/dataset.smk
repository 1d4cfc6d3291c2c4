rule synthetic_dataset:
    input:
        code=library("synthetic_dataset.py"),
    output:
        directory(str(sources.SYNTHETIC / RAW_NAME)),
    log:
        "results/logs/synthetic_dataset.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        sizes=stable(config["dataset"]["synthetic"]),
    script:
        "../scripts/synthetic_dataset.py"


rule download_market:
    input:
        code=library("fetch.py"),
    output:
        str(sources.REAL_ZIP),
    log:
        "results/logs/download_market.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        url=config["dataset"]["url"],
        sha256=config["dataset"]["sha256"],
    script:
        "../scripts/fetch.py"


rule extract_market:
    input:
        archive=str(sources.REAL_ZIP),
        code=library("extract_market.py"),
    output:
        directory(str(sources.REAL_RAW)),
    log:
        "results/logs/extract_market.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/extract_market.py"


rule prepare_dataset:
    input:
        raw=f"{{root}}/{RAW_NAME}",
        code=library("prepare_dataset.py"),
    output:
        directory("{root}/pytorch"),
    log:
        "results/logs/prepare_dataset/{root}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        require_full=lambda wildcards: wildcards.root == str(sources.MARKET)
        and config["dataset"]["check_counts"],
    script:
        "../scripts/prepare_dataset.py"
