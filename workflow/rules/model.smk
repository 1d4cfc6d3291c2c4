rule train:
    input:
        data=prepared_dataset,
        code=library("train.py"),
    output:
        weights="results/train/{dataset}/net_last.pth",
        opts="results/train/{dataset}/opts.yaml",
        curve="results/train/{dataset}/training_curve.png",
        summary="results/train/{dataset}/train.json",
    log:
        "results/logs/train_{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: all_cores()
    params:
        settings=stable(config["train"]),
        height=config["input"]["height"],
        width=config["input"]["width"],
        threads=config["threads"],
    script:
        "../scripts/train.py"


rule untrained_weights:
    input:
        code=library("untrained_weights.py"),
    output:
        weights="results/untrained/{dataset}/net_last.pth",
        opts="results/untrained/{dataset}/opts.yaml",
    log:
        "results/logs/untrained_{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        seed=config["model"]["seed"],
        # The network untrained weights are made for: the one training would make.
        arch=config["train"].get("arch", DEFAULT_ARCH),
    script:
        "../scripts/untrained_weights.py"


rule download_weights:
    input:
        code=library("download_weights.py"),
    output:
        weights="model/downloads/{checkpoint}/net_last.pth",
        opts="model/downloads/{checkpoint}/opts.yaml",
    log:
        "results/logs/download_weights_{checkpoint}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        source=config["model"]["weights"],
        sha256=config["model"]["sha256"],
    script:
        "../scripts/download_weights.py"
