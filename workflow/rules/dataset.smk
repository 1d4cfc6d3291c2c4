rule synthetic_dataset:
    input:
        code=library("synthetic_dataset.py"),
    output:
        directory("Market/synthetic/Market-1501-v15.09.15"),
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
        "Market/Market-1501-v15.09.15.zip",
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
        archive="Market/Market-1501-v15.09.15.zip",
        code=library("extract_market.py"),
    output:
        directory("Market/Market-1501-v15.09.15"),
    log:
        "results/logs/extract_market.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/extract_market.py"


rule prepare_dataset:
    input:
        raw="{root}/Market-1501-v15.09.15",
        code=library("prepare_dataset.py"),
    output:
        directory("{root}/pytorch"),
    log:
        "results/logs/prepare_dataset/{root}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        require_full=lambda wildcards: wildcards.root == "Market"
        and config["dataset"]["check_counts"],
    script:
        "../scripts/prepare_dataset.py"
