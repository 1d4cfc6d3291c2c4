"""Where a run's data and weights come from, and which (variant, device) pairs it runs.

The workflow decides these while it plans; here they are plain functions of the config and
of what is on disk under the project folder, so they are tested without Snakemake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from reidquant.architectures import DEFAULT_LINEAR_NUM, select
from reidquant.configcheck import REFERENCE
from reidquant.errors import ReidQuantError
from reidquant.market import RAW_NAME
from reidquant.variants import unsupported_reason

MARKET = Path("Market")
REAL_ZIP = MARKET / f"{RAW_NAME}.zip"
REAL_RAW = MARKET / RAW_NAME
SYNTHETIC = MARKET / "synthetic"
PREPARED = {"market1501": MARKET / "pytorch", "synthetic": SYNTHETIC / "pytorch"}
CHECKPOINT = Path("model/ft_net_dense")


@dataclass(frozen=True)
class Dataset:
    name: str          # market1501 or synthetic: the summary's dataset column
    raw: Path          # the raw Market-1501-format folder
    prepared: Path     # the reference project's per-identity layout, written from ``raw``
    note: str = ""     # what the user should know about the choice


def dataset(config: dict, root: Path = Path(".")) -> Dataset:
    """The real Market-1501 when it is on disk (or a URL is set), else the embedded one."""
    source = config["dataset"]["source"]
    real = (root / REAL_RAW).is_dir() or (root / REAL_ZIP).is_file() or bool(config["dataset"]["url"])
    if source == "market1501" and not real:
        raise ReidQuantError(f"dataset.source is market1501 but neither {REAL_ZIP} nor {REAL_RAW}/ exists: "
                             f"put the Market-1501 zip there or set dataset.url")
    if source == "market1501" or (source == "auto" and real):
        return Dataset("market1501", REAL_RAW, PREPARED["market1501"])
    note = (f"dataset.source=auto: no Market-1501 at {REAL_ZIP} or {REAL_RAW}/, so this run uses the "
            f"EMBEDDED SYNTHETIC dataset") if source == "auto" else ""
    return Dataset("synthetic", SYNTHETIC / RAW_NAME, PREPARED["synthetic"], note)


@dataclass(frozen=True)
class Weights:
    folder: Path   # holds net_last.pth and opts.yaml
    label: str     # the summary's weights column
    note: str = ""


def is_drive_id(setting: str) -> bool:
    return len(setting) >= 25 and "/" not in setting and all(c.isalnum() or c in "-_" for c in setting)


def download_folder(setting: str) -> Path:
    return Path("model/downloads") / hashlib.sha256(setting.encode()).hexdigest()[:12]


def weights(config: dict, dataset_name: str, root: Path = Path(".")) -> Weights:
    """The checkpoint folder ``model.weights`` names, and the rule that makes it if any."""
    setting = config["model"]["weights"]
    note = ""
    if setting == "auto":
        if (root / CHECKPOINT / "net_last.pth").is_file():
            check_checkpoint_folder(root, CHECKPOINT, "model.weights=auto")
            return Weights(CHECKPOINT, str(CHECKPOINT))
        note = f"model.weights=auto: no checkpoint at {CHECKPOINT}/net_last.pth, so one is trained"
        setting = "train"
    if setting == "train":
        return Weights(Path("results/train") / dataset_name, "trained", note)
    if setting == "untrained":
        return Weights(Path("results/untrained") / dataset_name, "untrained")
    if setting.startswith(("http://", "https://")) or is_drive_id(setting):
        return Weights(download_folder(setting), setting)
    folder = Path(setting)
    check_checkpoint_folder(root, folder, "model.weights")
    return Weights(folder, str(folder))


def check_checkpoint_folder(root: Path, folder: Path, field: str) -> None:
    """A checkpoint folder holds both files of the reference layout: the weights, and the
    training options that say how to build the network they belong to."""
    for name in ("net_last.pth", "opts.yaml"):
        if not (root / folder / name).is_file():
            raise ReidQuantError(f"{field}: {folder}/{name} not found (a checkpoint folder holds net_last.pth "
                                 f"and opts.yaml; or give a URL, auto, train or untrained)")
    # A network this project does not build stops the run before any job starts; any other
    # problem with the options is the loading job's to name (model.read_opts).
    try:
        opts = yaml.safe_load((root / folder / "opts.yaml").read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return
    if isinstance(opts, dict):
        select(opts, str(folder / "opts.yaml"))


def jobs(config: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(variant, device) pairs to run, and (variant, device, reason) for each one that cannot run
    anywhere: said in the log and in the summary, never run mislabelled.

    Only what is impossible everywhere is decided here (OpenVINO on a GPU, float16 on a CPU).
    Whether a machine has a CUDA device or native bfloat16 is decided by the job on the node
    that runs it, which records why where it cannot: the machine that plans is not the one
    that runs the jobs on a cluster."""
    runnable, skipped = [], []
    for device in config["devices"]:
        for variant, spec in config["variants"].items():
            reason = unsupported_reason(spec, device)
            if reason:
                skipped.append((variant, device, reason))
            else:
                runnable.append((variant, device))
    return runnable, skipped


REAL_DISTRACTORS = MARKET / "distractors_500k"
SYNTHETIC_DISTRACTORS = SYNTHETIC / "distractors"


@dataclass(frozen=True)
class Distractors:
    name: str      # market1501_500k or synthetic: the search table's distractors column
    folder: Path   # the images
    count: int     # how many are searched among
    note: str = ""


def distractors(config: dict, root: Path = Path(".")) -> Distractors:
    """The real Market-1501 500k distractor set where it is on disk (a folder of its .jpg
    files), else generated ones; ``search.distractors.count`` of them."""
    setting = config["search"]["distractors"]
    wanted, source = setting["count"], setting["source"]
    real = root / REAL_DISTRACTORS
    if source == "market1501_500k" and not real.is_dir():
        raise ReidQuantError(f"search.distractors.source is market1501_500k but {REAL_DISTRACTORS}/ does not exist: "
                             f"put the 500k distractor images there")
    if source == "market1501_500k" or (source == "auto" and real.is_dir()):
        available = sum(1 for _ in real.rglob("*.jpg"))
        if not available:
            raise ReidQuantError(f"{REAL_DISTRACTORS}: no .jpg images in it")
        note = "" if available >= wanted else (f"search.distractors.count is {wanted} but {REAL_DISTRACTORS}/ "
                                               f"has {available}: all of them are used")
        return Distractors("market1501_500k", REAL_DISTRACTORS, min(wanted, available), note)
    return Distractors("synthetic", SYNTHETIC_DISTRACTORS, wanted)


SEARCHED_BY_DEFAULT = "ov_int8"


def search_jobs(config: dict, runnable, skipped=()) -> list[tuple[str, str]]:
    """The (variant, device) pairs whose gallery the search stage indexes: those of
    ``search.variants`` that run. Unset, it is ov_int8 where the config has it, else the fp32
    reference, so that a config of other variants still plans. A named variant that runs on
    no device of this run (``skipped`` says why) is one line."""
    names = given = config["search"].get("variants")
    if names is None:
        names = [SEARCHED_BY_DEFAULT if SEARCHED_BY_DEFAULT in config["variants"] else REFERENCE]
    for name in names:
        if name not in config["variants"]:
            raise ReidQuantError(f"config field search.variants: {name!r} is not a variant of this config "
                                 f"({', '.join(config['variants'])})")
        if given is not None and not any(variant == name for variant, _ in runnable):
            reasons = "; ".join(f"on {device}: {reason}" for variant, device, reason in skipped if variant == name)
            raise ReidQuantError(f"config field search.variants: {name!r} runs on no device of this run "
                                 f"({reasons or 'config field devices'})")
    return [(variant, device) for variant, device in runnable if variant in names]


def embedding_size(config: dict, weights: Weights) -> int | None:
    """The embedding's size, where planning can know it: the checkpoint's opts.yaml, or what
    training will use; None for weights not yet downloaded."""
    if weights.label in ("trained", "untrained"):
        return config["train"].get("linear_num") or DEFAULT_LINEAR_NUM
    try:
        opts = yaml.safe_load((weights.folder / "opts.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    size = opts.get("linear_num", DEFAULT_LINEAR_NUM) if isinstance(opts, dict) else None
    return size if isinstance(size, int) and size > 0 else None
