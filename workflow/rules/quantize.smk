rule quantize:
    input:
        weights=str(WEIGHTS / "net_last.pth"),
        opts=str(WEIGHTS / "opts.yaml"),
        data=str(PREPARED_MARKER),
        code=library("variants.py", "pipeline.py", "model.py"),
    output:
        model="results/{variant}/model.pt",
        info="results/{variant}/quantize.json",
    log:
        "results/logs/quantize_{variant}.log",
    conda:
        "../../envs/cpu.yaml"
    threads: workflow.cores
    params:
        spec=lambda wildcards: stable(variant_spec(wildcards)),
        height=config["input"]["height"],
        width=config["input"]["width"],
        threads=config["threads"],
    script:
        "../scripts/quantize.py"
