rule train:
    input:
        data=str(PREPARED),
        code=library("train.py"),
    output:
        weights=f"results/train/{DATASET}/net_last.pth",
        opts=f"results/train/{DATASET}/opts.yaml",
        curve=f"results/train/{DATASET}/training_curve.png",
        summary=f"results/train/{DATASET}/train.json",
    log:
        f"results/logs/train_{DATASET}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: all_cores()
    params:
        dataset=DATASET,
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
        weights=f"results/untrained/{DATASET}/net_last.pth",
        opts=f"results/untrained/{DATASET}/opts.yaml",
    log:
        f"results/logs/untrained_{DATASET}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        seed=config["model"]["seed"],
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
