# The gallery side, a target of its own (snakemake --cores 4 results/search/summary.csv): each
# searched variant's gallery plus distractors, indexed and searched by FAISS. The distractors
# are embedded by each variant's own model in search.shards jobs (one cluster job each).


scattergather:
    distractors=config["search"]["shards"],


rule synthetic_distractors:
    input:
        code=library("synthetic_distractors.py"),
    output:
        directory(str(sources.SYNTHETIC_DISTRACTORS)),
    log:
        "results/logs/synthetic_distractors.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        images=DISTRACTORS.count,
        seed=config["search"]["distractors"]["seed"],
    script:
        "../scripts/synthetic_distractors.py"


rule distractor_shard:
    input:
        model="results/{variant}/model",
        build="results/{variant}/quantize.json",
        images=str(DISTRACTORS.folder),
        code=library("distractor_shard.py"),
    output:
        "results/{variant}/{device}/distractors/{scatteritem}.npy",
    log:
        "results/logs/distractors_{variant}_{device}_{scatteritem}.log",
    conda:
        lambda wildcards: f"../../envs/{wildcards.device}.yaml"
    # Untimed: one thread each, side by side.
    threads: 1
    resources:
        gpu=lambda wildcards: int(wildcards.device == "cuda"),
    params:
        spec=lambda wildcards: stable(variant_spec(wildcards)),
        settings=embedding_settings(),
        images=DISTRACTORS.count,
        source=DISTRACTORS.name,
        hidden_hardware=HIDDEN_HARDWARE,
        trust_compiled=config["trust_compiled"],
    script:
        "../scripts/distractor_shard.py"


rule distractor_gather:
    input:
        shards=gather.distractors(
            "results/{{variant}}/{{device}}/distractors/{scatteritem}.npy"
        ),
        code=library("distractor_gather.py"),
    output:
        embeddings="results/{variant}/{device}/distractors.npy",
        record="results/{variant}/{device}/distractors.json",
    log:
        "results/logs/distractor_gather_{variant}_{device}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        images=DISTRACTORS.count,
        source=DISTRACTORS.name,
        invalidates=searched_downstream,
    script:
        "../scripts/distractor_gather.py"


rule search:
    input:
        features="results/{variant}/{device}/features.mat",
        distractors="results/{variant}/{device}/distractors.npy",
        record="results/{variant}/{device}/distractors.json",
        code=library("search.py"),
    output:
        "results/{variant}/{device}/search.json",
    log:
        "results/logs/search_{variant}_{device}.log",
    conda:
        "../../envs/cpu.yaml"
    # Query latency is timed: every core.
    threads: all_cores()
    params:
        settings=stable(
            {
                key: config["search"][key]
                for key in ("indexes", "k", "nprobe", "ef_search")
            }
        ),
        threads=config["threads"],
    script:
        "../scripts/search.py"


rule search_summary:
    input:
        search=expand("results/{job[0]}/{job[1]}/search.json", job=SEARCH_JOBS),
        records=expand("results/{job[0]}/{job[1]}/distractors.json", job=SEARCH_JOBS),
        code=library("search_summary.py"),
    output:
        csv=report(
            "results/search/summary.csv",
            caption="../report/search.rst",
            category="Search",
        ),
        markdown=report(
            "results/search/summary.md",
            caption="../report/search.rst",
            category="Search",
        ),
        accuracy=report(
            "results/plots/search_accuracy_vs_bytes.png",
            caption="../report/search_accuracy.rst",
            category="Search",
        ),
        latency=report(
            "results/plots/search_latency_vs_size.png",
            caption="../report/search_latency.rst",
            category="Search",
        ),
    log:
        "results/logs/search_summary.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        jobs=SEARCH_JOBS,
        dataset=DATASET.name,
        weights=WEIGHTS.label,
    script:
        "../scripts/search_summary.py"
