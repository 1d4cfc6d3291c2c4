# Per-layer sensitivity: an analysis of built int8 artifacts, a target of its own
# (snakemake --cores 4 results/sensitivity.md), never part of results/summary.csv.


rule sensitivity:
    input:
        weights=str(WEIGHTS.folder / "net_last.pth"),
        opts=str(WEIGHTS.folder / "opts.yaml"),
        model="results/{variant}/model",
        build="results/{variant}/quantize.json",
        data=str(DATASET.prepared),
        code=library("sensitivity.py"),
    output:
        "results/{variant}/sensitivity.csv",
    log:
        "results/logs/sensitivity_{variant}.log",
    conda:
        "../../envs/cpu.yaml"
    # Untimed, but a compile and a val pass per layer or quantizer group: every core.
    threads: all_cores()
    params:
        spec=lambda wildcards: stable(variant_spec(wildcards)),
        height=config["input"]["height"],
        width=config["input"]["width"],
        threads=config["threads"],
    script:
        "../scripts/sensitivity.py"


rule sensitivity_report:
    input:
        csv=expand("results/{variant}/sensitivity.csv", variant=SENSITIVITY),
        code=library("sensitivity_report.py"),
    output:
        markdown=report(
            "results/sensitivity.md",
            caption="../report/sensitivity_md.rst",
            category="Sensitivity",
        ),
        plot=report(
            "results/plots/sensitivity.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
        ),
    log:
        "results/logs/sensitivity_report.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        variants=SENSITIVITY,
    script:
        "../scripts/sensitivity_report.py"
