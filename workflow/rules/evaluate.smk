rule evaluate:
    input:
        features="results/{variant}/{device}/features.mat",
        reference=reference_features,
        code=library("evaluate.py"),
    output:
        "results/{variant}/{device}/metrics.json",
    log:
        "results/logs/evaluate_{variant}_{device}.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/evaluate.py"
