rule train:
    input:
        data=str(PREPARED_MARKER),
        code=library("train.py", "model.py", "data.py"),
    output:
        weights=f"results/train/{DATASET}/net_last.pth",
        opts=f"results/train/{DATASET}/opts.yaml",
        curve=f"results/train/{DATASET}/training_curve.png",
    params:
        prepared=str(PREPARED),
        dataset=DATASET,
        settings=stable(config["train"]),
        height=config["input"]["height"],
        width=config["input"]["width"],
        threads=config["threads"],
    threads: workflow.cores
    log:
        f"results/logs/train_{DATASET}.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/train.py"


rule untrained_weights:
    output:
        weights=f"results/untrained/{DATASET}/net_last.pth",
        opts=f"results/untrained/{DATASET}/opts.yaml",
    params:
        seed=config["model"]["seed"],
    log:
        f"results/logs/untrained_{DATASET}.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/untrained_weights.py"
