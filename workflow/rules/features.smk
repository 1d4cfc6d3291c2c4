rule extract_features:
    input:
        model="results/{variant}/model",
        build="results/{variant}/quantize.json",
        reference=reference_model,
        reference_build=reference_build,
        data=str(DATASET.prepared),
        code=library("extract_features.py"),
    output:
        features="results/{variant}/{device}/features.mat",
        timing="results/{variant}/{device}/timing.json",
    log:
        "results/logs/extract_{variant}_{device}.log",
    conda:
        lambda wildcards: f"../../envs/{wildcards.device}.yaml"
    # Every core: nothing else may run while a variant is being timed.
    threads: all_cores()
    resources:
        gpu=lambda wildcards: int(wildcards.device == "cuda"),
    params:
        spec=lambda wildcards: stable(variant_spec(wildcards)),
        reference_spec=stable(config["variants"][REFERENCE]),
        settings=extract_settings(),
        dataset=DATASET.name,
        hidden_hardware=HIDDEN_HARDWARE,
        trust_compiled=config["trust_compiled"],
    script:
        "../scripts/extract_features.py"
