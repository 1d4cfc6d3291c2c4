rule quantize:
    input:
        weights=str(WEIGHTS / "net_last.pth"),
        opts=str(WEIGHTS / "opts.yaml"),
        data=str(PREPARED),
        code=library("quantize.py"),
    output:
        model="results/{variant}/model.pt",
        info="results/{variant}/quantize.json",
    log:
        "results/logs/quantize_{variant}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: all_cores()
    params:
        spec=lambda wildcards: stable(variant_spec(wildcards)),
        height=config["input"]["height"],
        width=config["input"]["width"],
        threads=config["threads"],
    script:
        "../scripts/quantize.py"
