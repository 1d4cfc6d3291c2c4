import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

from reidquant.codedeps import library_files
from reidquant.configcheck import check_config, check_input_size, coerce_config
from reidquant.devices import device_available, unsupported_reason
from reidquant.errors import ReidQuantError
from reidquant.market import RAW_NAME


def fail(message):
    """A mistake in the user's setup, found while planning: one line and exit status 1."""
    sys.exit(f"reidquant: error: {message}")


# --config values arrive as strings; then one line naming the first wrong field; then
# Snakemake's validation fills in the schema's defaults, which the size check needs.
SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
coerce_config(config, SCHEMA)
try:
    check_config(config, SCHEMA)
    validate(config, "../schemas/config.schema.yaml")
    check_input_size(
        config["input"]["height"],
        config["input"]["width"],
        config["extract"]["ms"],
        field="config field extract.ms",
    )
except ReidQuantError as error:
    fail(error)

MARKET = Path("Market")
REAL_ZIP = MARKET / f"{RAW_NAME}.zip"
REAL_RAW = MARKET / RAW_NAME
CHECKPOINT = Path("model/ft_net_dense")


def dataset_source():
    """market1501 or synthetic, from dataset.source and what is on disk."""
    source = config["dataset"]["source"]
    real = REAL_RAW.is_dir() or REAL_ZIP.is_file() or config["dataset"]["url"]
    if source == "market1501" and not real:
        fail(
            f"dataset.source is market1501 but neither {REAL_ZIP} nor {REAL_RAW}/ exists: "
            f"put the Market-1501 zip there or set dataset.url"
        )
    if source == "auto":
        source = "market1501" if real else "synthetic"
        if source == "synthetic":
            logger.warning(
                f"dataset.source=auto: no Market-1501 at {REAL_ZIP} or {REAL_RAW}/, "
                f"so this run uses the EMBEDDED SYNTHETIC dataset"
            )
    return source


DATASET = dataset_source()
DATA_ROOT = MARKET if DATASET == "market1501" else MARKET / "synthetic"
RAW = DATA_ROOT / RAW_NAME
PREPARED = DATA_ROOT / "pytorch"


def weights_source():
    """(checkpoint folder, label for the weights column) from model.weights."""
    setting = config["model"]["weights"]
    if setting == "auto":
        if (CHECKPOINT / "net_last.pth").is_file():
            return CHECKPOINT, str(CHECKPOINT)
        logger.info(
            f"model.weights=auto: no checkpoint at {CHECKPOINT}/net_last.pth, so one is trained"
        )
        setting = "train"
    if setting == "train":
        return Path("results/train") / DATASET, "trained"
    if setting == "untrained":
        return Path("results/untrained") / DATASET, "untrained"
    if setting.startswith(("http://", "https://")) or is_drive_id(setting):
        return Path("model/downloads") / download_name(setting), setting
    folder = Path(setting)
    if not (folder / "net_last.pth").is_file():
        fail(
            f"model.weights: {folder}/net_last.pth not found (give a checkpoint folder with "
            f"net_last.pth and opts.yaml, a URL, auto, train or untrained)"
        )
    return folder, str(folder)


def is_drive_id(setting):
    return (
        len(setting) >= 25
        and "/" not in setting
        and all(c.isalnum() or c in "-_" for c in setting)
    )


def download_name(setting):
    import hashlib

    return hashlib.sha256(setting.encode()).hexdigest()[:12]


WEIGHTS, WEIGHTS_LABEL = weights_source()


def runnable_jobs():
    """(variant, device) pairs to run, and (variant, device, reason) for each one that cannot:
    said in the log and in the summary, never run mislabelled."""
    devices = [device for device in config["devices"] if device_available(device)]
    skipped = [
        ("*", device, "no CUDA device on this machine")
        for device in config["devices"]
        if device not in devices
    ]
    if not devices:
        fail(
            f"devices: none of {', '.join(config['devices'])} is available on this machine "
            f"(no CUDA device); add cpu"
        )
    jobs = []
    for device in devices:
        for variant, spec in config["variants"].items():
            reason = unsupported_reason(spec, device)
            if reason:
                skipped.append((variant, device, reason))
            else:
                jobs.append((variant, device))
    for variant, device, reason in skipped:
        logger.info(f"skipping {variant} on {device}: {reason}")
    return jobs, skipped


JOBS, SKIPPED = runnable_jobs()


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


def variant_spec(wildcards):
    return config["variants"][wildcards.variant]


def stable(value):
    """A canonical string of a config value, so params compare equal across runs."""
    return json.dumps(value, sort_keys=True)


def job_outputs(pattern):
    return [pattern.format(variant=v, device=d) for v, d in JOBS]


def reference_model(wildcards):
    """The fp32 artifact every other variant is timed side by side with."""
    if wildcards.variant == "fp32":
        return []
    return "results/fp32/model.pt"


def reference_features(wildcards):
    if wildcards.variant == "fp32":
        return []
    return f"results/fp32/{wildcards.device}/features.mat"


wildcard_constraints:
    variant="[A-Za-z0-9][A-Za-z0-9_.-]*",
    device="cpu|cuda",
