import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

from reidquant import sources
from reidquant.architectures import DEFAULT_ARCH
from reidquant.codedeps import library_files
from reidquant.devices import HIDE_ENV
from reidquant.configcheck import (
    REFERENCE,
    SCHEMA_PATH,
    UNRANKED,
    check_config,
    check_input_size,
    coerce_config,
)
from reidquant.errors import ReidQuantError
from reidquant.market import RAW_NAME
from reidquant.search import check_search_settings
from reidquant.variants import (
    complete,
    measures_sensitivity,
    needs_ranking,
    unranked,
)


def fail(message):
    """A mistake in the user's setup, found while planning: one line and exit status 1."""
    sys.exit(f"reidquant: error: {message}")


# --config values arrive as strings; then one line naming the first wrong field; then
# Snakemake's validation fills in the schema's defaults, which the size check needs; then
# what this run reads and runs, decided from the config and what is on disk.
coerce_config(config, SCHEMA_PATH)
try:
    check_config(config, SCHEMA_PATH)
    validate(config, str(SCHEMA_PATH))
    check_input_size(
        config["input"]["height"],
        config["input"]["width"],
        config["extract"]["ms"],
        field="config field extract.ms",
    )
    config["variants"] = {
        name: complete(spec, f"config field variants.{name}")
        for name, spec in config["variants"].items()
    }
    DATASET = sources.dataset(config)
    WEIGHTS = sources.weights(config, DATASET.name)
    JOBS, SKIPPED = sources.jobs(config)
    DISTRACTORS = sources.distractors(config)
    SEARCH_JOBS = sources.search_jobs(config, JOBS, SKIPPED)
    check_search_settings(config["search"], sources.embedding_size(config, WEIGHTS))
    # Variants whose per-layer sensitivity results/sensitivity.md measures.
    SENSITIVITY = sorted(
        {v for v, _ in JOBS if measures_sensitivity(config["variants"][v])}
    )
except ReidQuantError as error:
    fail(error)
# train settings apply where the workflow trains; untrained weights follow train.arch alone.
UNUSED_TRAIN = sorted(
    set(config["train"])
    - {"recipe"}
    - ({"arch"} if WEIGHTS.label == "untrained" else set())
)
if UNUSED_TRAIN and WEIGHTS.label != "trained":
    logger.warning(
        f"config field train: {', '.join(UNUSED_TRAIN)} not used: model.weights is "
        f"{config['model']['weights']}, so nothing is trained"
    )
for note in (DATASET.note, WEIGHTS.note, DISTRACTORS.note):
    if note:
        logger.warning(note)
for variant, device, reason in SKIPPED:
    logger.info(f"skipping {variant} on {device}: {reason}")


def library(script):
    """The library files the rule's script imports (transitively), so that changing one reruns
    exactly the jobs that run it. Relative to the working directory: a copied or moved project
    stays up to date."""
    files = library_files(
        Path(workflow.basedir) / "workflow" / "scripts" / script,
        Path(workflow.basedir) / "reidquant",
    )
    return [local(os.path.relpath(path)) for path in files]


def all_cores():
    """Threads of a timed job: every core, so that nothing else runs while a variant is timed.

    --cores on one machine; inside a cluster job (run with --cores all) the cores that job was
    given. Where no total is set (a cluster's submitting process, --unlock), 1: the cluster's
    cpus_per_task then sizes the job.
    """
    cores = workflow.resource_settings.cores
    return cores if cores and cores != sys.maxsize else 1


def spec_of(name):
    """A variant's spec; <name>.unranked is the fully int8 build of ranked variant <name>."""
    if name.endswith(UNRANKED):
        return unranked(config["variants"][name.removesuffix(UNRANKED)])
    return config["variants"][name]


def variant_spec(wildcards):
    return spec_of(wildcards.variant)


def budget_scales(wildcards):
    """The extraction's scales, for a build that judges a budget (None for any other)."""
    if spec_of(wildcards.variant).get("accuracy_control"):
        return config["extract"]["ms"]
    return None


def ranking(wildcards):
    """The per-layer sensitivity a ranked variant's build chooses its float layers by."""
    if wildcards.variant.endswith(UNRANKED) or not needs_ranking(
        spec_of(wildcards.variant)
    ):
        return []
    return f"results/{wildcards.variant}{UNRANKED}/sensitivity.csv"


def stable(value):
    """A canonical string of a config value, so params compare equal across runs."""
    return json.dumps(value, sort_keys=True)


def job_outputs(pattern):
    return [pattern.format(variant=v, device=d) for v, d in JOBS]


def reference_model(wildcards):
    """The fp32 artifact every other variant is timed side by side with."""
    if wildcards.variant == REFERENCE:
        return []
    return f"results/{REFERENCE}/model"


def reference_features(wildcards):
    if wildcards.variant == REFERENCE:
        return []
    return f"results/{REFERENCE}/{wildcards.device}/features.mat"


def reference_build(wildcards):
    """The fp32 build's record, which its artifact is checked against before it is timed."""
    if wildcards.variant == REFERENCE:
        return []
    return f"results/{REFERENCE}/quantize.json"


def downstream(wildcards):
    """What a build invalidates when it starts: its variant's extractions and their scores, its
    sensitivity, and the table. A build interrupted halfway then leaves nothing that looks up to
    date, and the next run rebuilds it (Snakemake does not rebuild a missing intermediate
    whose consumers are present)."""
    v = wildcards.variant
    files = [
        f"results/{v}/{d}/{name}"
        for d in config["devices"]
        for name in ("features.mat", "timing.json", "metrics.json")
    ]
    return files + [
        f"results/{v}/sensitivity.csv",
        "results/summary.csv",
        "results/summary.md",
    ]


def searched_downstream(wildcards):
    """What a gather of distractor embeddings invalidates when it starts: the search of its
    (variant, device) and the search table, so that a gather that finds a broken shard, or is
    interrupted, leaves nothing that looks up to date and the next run embeds that shard again.
    """
    return [
        f"results/{wildcards.variant}/{wildcards.device}/search.json",
        "results/search/summary.csv",
        "results/search/summary.md",
    ]


# Hardware a job's process is told to act without (REIDQUANT_HIDE_HARDWARE): a parameter of
# every job that decides what its node can run, so that a change reruns them.
HIDDEN_HARDWARE = os.environ.get(HIDE_ENV, "")


def prepared_dataset(wildcards):
    return str(sources.PREPARED[wildcards.dataset])


def embedding_settings():
    """The config an embedding (features, distractors) depends on, timing apart."""
    return stable({key: config[key] for key in ("input", "extract")})


def extract_settings():
    """The config an extraction's features and timings depend on."""
    return stable(
        {key: config[key] for key in ("input", "extract", "benchmark", "threads")}
    )


wildcard_constraints:
    variant="[A-Za-z0-9][A-Za-z0-9_.-]*",
    device="cpu|cuda",
    dataset="market1501|synthetic",
    root=f"{sources.MARKET}|{sources.SYNTHETIC}",
    scatteritem=r"\d+-of-\d+",
