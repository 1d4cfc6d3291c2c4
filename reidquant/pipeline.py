"""The workflow's stages as plain functions: what each Snakemake rule script calls."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reidquant.configcheck import check_input_size
from reidquant.data import load_batch
from reidquant.devices import cpu_identity, cpu_isa, cpu_model, node, set_threads, settled_resident_bytes
from reidquant.errors import ReidQuantError, cause
from reidquant.features import extract, extract_dataset, latency, model_throughput, timing_images
from reidquant.jsonio import atomic_path, write_json
from reidquant.market import list_prepared, spread
from reidquant.matfile import save_mat
from reidquant.model import Embedder, load_checkpoint
from reidquant import sensitivity
from reidquant.selection import selection_set
from reidquant.variants import (
    artifact_path,
    build_artifact,
    build_record,
    deployed_spec,
    hardware_reason,
    is_calibrated,
    labels,
    load_runner,
    measure_sensitivity,
    needs_ranking,
    unsupported_reason,
    verify_artifact,
)

CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class ExtractSettings:
    """How features are extracted and timed: the config's ``input``, ``extract``,
    ``benchmark`` and ``threads`` (defaults from the schema)."""

    height: int
    width: int
    batch_size: int
    workers: int
    ms: tuple[float, ...]
    warmup: int
    repeats: int
    latency_batches: tuple[int, ...]
    latency_rounds: int
    threads: int | None

    @classmethod
    def from_config(cls, config: dict, threads: int | None = None) -> ExtractSettings:
        """From a config with those sections; ``threads`` where the config leaves it null."""
        extract, benchmark = config["extract"], config["benchmark"]
        return cls(height=config["input"]["height"], width=config["input"]["width"],
                   batch_size=extract["batch_size"], workers=extract["workers"], ms=tuple(extract["ms"]),
                   warmup=benchmark["warmup"], repeats=benchmark["repeats"],
                   latency_batches=tuple(benchmark["latency_batches"]), latency_rounds=benchmark["latency_rounds"],
                   threads=config["threads"] or threads)


def calibration_paths(data_root: Path, count: int) -> list[Path]:
    """``count`` training images spread evenly over ``train`` (identities in sorted order).

    Only ``train`` is ever read: no query or gallery image can reach calibration, and neither
    can ``val``, where what the workflow chooses is judged.
    """
    train = list_prepared(data_root, "train")
    if count > len(train):
        print(f"warning: calibration asked for {count} images but train has {len(train)}; using all of them",
              file=sys.stderr)
        return train
    return spread(train, count)


def calibration_batches(paths, height: int, width: int, batch_size: int = CALIBRATION_BATCH) -> list[torch.Tensor]:
    return [load_batch(paths[i:i + batch_size], height, width) for i in range(0, len(paths), batch_size)]


def quantize(name: str, spec: dict, weights: Path, data_root: Path, out: Path, height: int, width: int,
             threads: int | None = None, info_out: Path | None = None, weights_label: str | None = None,
             dataset_label: str | None = None, ranking: Path | None = None, ms=(1,), invalidates=()) -> dict:
    """Build variant ``name`` from a checkpoint folder into the folder ``out``; returns what
    the summary needs of it (also written to ``info_out``, when given).

    ``weights_label`` and ``dataset_label`` (the summary's ``weights`` and ``dataset``; by
    default the folders) are recorded with it, so the table labels a row by what it was built from.
    ``ranking``: the ``sensitivity.csv`` of its fully int8 build, for a variant that chooses
    layers by it; ``ms``: the extraction's scales, which a budget is judged with.
    ``invalidates``: files made from a previous build (its extractions, the table), deleted
    before building, so that an interrupted build leaves nothing that looks up to date.
    """
    check_input_size(height, width, ms, field="input size")
    for stale in invalidates:
        Path(stale).unlink(missing_ok=True)
    set_threads(threads)
    net, opts = load_checkpoint(weights)
    embedder = Embedder(net).eval()
    # What graph exports trace: only its shape matters. Two images, so that the batch axis
    # stays dynamic (one would pin it to 1).
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    batches, used = calibration(spec, data_root, height, width)
    layers = []
    if needs_ranking(spec):
        if ranking is None:
            raise ReidQuantError(f"variant {name}: float_modules auto chooses layers by the per-layer sensitivity "
                                 f"of its fully int8 build; give its sensitivity.csv")
        layers = sensitivity.ranking(sensitivity.read_csv(ranking))
    chosen_on = None
    if spec.get("accuracy_control"):
        chosen_on = selection_set(spec["accuracy_control"]["metric"], data_root, height, width, embedder, ms)
    fp32_bytes = sum(v.numel() * v.element_size() for v in embedder.state_dict().values())
    info = build_artifact(name, spec, embedder, opts, example, batches, Path(out), layers, chosen_on)
    info.update({"calibration_images": used, "fp32_param_bytes": fp32_bytes, "height": height, "width": width,
                 "weights": weights_label or str(weights), "dataset": dataset_label or str(data_root),
                 "arch": opts["arch"]})
    if info_out is not None:
        write_json(info_out, info)
    return info


def calibration(spec: dict, data_root: Path, height: int, width: int) -> tuple[list[torch.Tensor], int]:
    """The calibration batches of a variant (none for a type that is not calibrated), and how
    many images they hold."""
    if not is_calibrated(spec):
        return [], 0
    paths = calibration_paths(data_root, spec["calibration_images"])
    return calibration_batches(paths, height, width, min(CALIBRATION_BATCH, len(paths))), len(paths)


def layer_sensitivity(name: str, spec: dict, weights: Path, data_root: Path, artifact: Path, record: Path,
                      out: Path, height: int, width: int, threads: int | None = None) -> list[dict]:
    """Per quantized layer of variant ``name``'s artifact (the folder quantize wrote from the
    checkpoint folder ``weights``, as its build ``record`` says), what it costs on the prepared
    layout's ``val`` images (``reidquant.sensitivity``), into the csv ``out``."""
    set_threads(threads)
    artifact_path(artifact, spec)
    verify_artifact(artifact, record)
    net, opts = load_checkpoint(weights)
    embedder = Embedder(net).eval()
    batches, _ = calibration(spec, data_root, height, width)
    validation = calibration_batches(sensitivity.val_paths(data_root), height, width, sensitivity.BATCH)
    rows = measure_sensitivity(name, spec, Path(artifact), embedder, opts, batches, validation)
    sensitivity.write_csv(rows, Path(out))
    return rows


def cold_start(artifact: Path, spec: dict, device: str, name: str, image: torch.Tensor, warmup: int,
               trust_compiled: bool = False) -> tuple:
    """Load variant ``name`` as a freshly started service would, and embed one image.

    Returns the runner and what that cost: ``first_embedding_s`` from the start of loading to
    the first embedding returned (load, any compilation, the first call), of it ``load_s`` the
    loading and ``cold_call_s`` the first call; and ``mem_mb``, the resident memory the loaded
    variant adds once warmed up at batch 1, both readings taken with freed memory handed back
    (what compiling needed for a moment is not what serving holds); on CUDA also
    ``cuda_mem_mb``, the peak memory it allocated there. Call it before any other model is
    loaded into the process.
    """
    before = settled_resident_bytes()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    runner = load_runner(artifact, spec, device, name, trust_compiled)
    loaded = time.perf_counter()
    single = runner.for_latency()
    with torch.inference_mode():
        single(image)
        single.synchronize()
        first = time.perf_counter()
        for _ in range(warmup):
            single(image)
        single.synchronize()
    after = settled_resident_bytes()
    profile = {"first_embedding_s": first - start, "load_s": loaded - start, "cold_call_s": first - loaded,
               "mem_mb": None if before is None or after is None else (after - before) / 1e6}
    if device == "cuda":
        profile["cuda_mem_mb"] = torch.cuda.max_memory_allocated() / 1e6
    return runner, profile


def not_run_record(name: str, device: str, reason: str) -> dict:
    """What a job records where its node cannot run variant ``name`` on ``device``, said once."""
    record = {"reason": reason, "node": node(), "device": device, "cpu_model": cpu_model(), "cpu_isa": cpu_isa()}
    print(f"variant {name} does not run on {device} here: {reason} (node {record['node']})", file=sys.stderr)
    return record


def extract_features(name: str, artifact: Path, record: Path, spec: dict, device: str, data_root: Path, out: Path,
                     timing_out: Path, settings: ExtractSettings, reference_artifact: Path | None = None,
                     reference_record: Path | None = None, reference_spec: dict | None = None,
                     dataset_label: str | None = None, record_not_run: bool = False,
                     trust_compiled: bool = False) -> dict:
    """Features of variant ``name`` on ``device`` into ``out`` (.mat), its timing into ``timing_out``
    (which records ``dataset_label``, by default the data folder, as the images it ran on).

    ``record`` is the build's record outside the artifact folder (quantize.json; for the fp32
    reference ``reference_record``): every file is checked against the sha256 it holds before
    anything is loaded. A compiled program built on another machine loads only with
    ``trust_compiled``.

    In this order, so that no figure carries another's cost: the variant's cold start (before
    any other model is in the process), then, with ``reference_artifact`` (the fp32 variant)
    loaded, throughput at the extraction batch and latency at each of ``settings.latency_batches``,
    each timed in alternating rounds with fp32 on the same images; then the extraction.

    Where this machine lacks what the variant needs on ``device`` (a CUDA device, native
    bfloat16), ``record_not_run`` writes that, with this machine's name and CPU, into both
    outputs (``not_run``) instead of failing: the workflow's jobs decide on their own node.
    """
    reason = unsupported_reason(spec, device)
    if reason:
        raise ReidQuantError(f"variant type {spec['type']} cannot run on {device}: {reason}")
    missing = hardware_reason(spec, device)
    if missing and not record_not_run:
        raise ReidQuantError(f"variant {name} cannot run on {device} on this machine: {missing}")
    if missing:
        not_run = not_run_record(name, device, missing)
        save_mat(out, {"not_run": json.dumps(not_run)})
        write_json(timing_out, {"not_run": not_run, "dataset": dataset_label or str(data_root)})
        return {"not_run": not_run}
    s = settings
    check_input_size(s.height, s.width, s.ms)
    threads = set_threads(s.threads)
    artifact_path(artifact, spec)  # a missing artifact is said before any image is read
    files = verify_artifact(artifact, record)["files_sha256"]
    if reference_artifact is not None:
        verify_artifact(reference_artifact, reference_record)
    spec, built = deployed_spec(artifact, spec), build_record(artifact)
    if device == "cpu" and built["cpu_isa"] != cpu_isa():
        print(f"warning: variant {name} was built on a CPU with {built['cpu_isa']} int8 instructions "
              f"({built['cpu_model']}) and runs on one with {cpu_isa()} ({cpu_model()}): its saturation guard "
              f"was chosen for the other", file=sys.stderr)
    images, copies = timing_images(Path(data_root), s.height, s.width, {1, s.batch_size, *s.latency_batches})
    phases = {}
    runner, profile = cold_start(artifact, spec, device, name, images[1], s.warmup, trust_compiled)
    phases["cold_start"] = profile["first_embedding_s"]
    if copies:  # said once the artifact has loaded, so that a refused one prints its error alone
        print(f"note: the gallery has {max(images) - copies} images; the timing batch of {max(images)} is filled "
              f"with {copies} copies of the last one", file=sys.stderr)
    reference = None if reference_artifact is None else load_runner(reference_artifact, reference_spec, device,
                                                                     trust_compiled=trust_compiled)
    start = time.perf_counter()
    timing = model_throughput(runner, images[s.batch_size], s.warmup, s.repeats, reference)
    phases["throughput"] = time.perf_counter() - start
    start = time.perf_counter()
    timing["latency"] = {
        str(b): latency(runner, images[b], s.warmup, s.latency_rounds, reference,
                        first_call_s=profile["cold_call_s"] if b == 1 else None)
        for b in s.latency_batches}
    phases["latency"] = time.perf_counter() - start
    mat, extraction = extract_dataset(runner, Path(data_root), s.height, s.width, s.batch_size, s.workers, s.ms)
    phases["extraction"] = extraction["extract_s"]
    timing.update({
        **extraction,
        **profile,
        "device": device,
        "dataset": dataset_label or str(data_root),
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_isa": cpu_isa(),
        "build_cpu_model": built["cpu_model"],
        "build_cpu_isa": built["cpu_isa"],
        "saturation_guard": built.get("saturation_guard"),
        "threads": threads,
        "torch": torch.__version__,
        **labels(spec),
        # where this node could not run what the build compiled and compiled it here instead
        "runtime_fallback": runner.runtime if runner.runtime not in (None, labels(spec)["runtime"]) else None,
        **({"runtime": runner.runtime} if runner.runtime else {}),
        "runtime_config": runner.describe(),
        "latency_runtime_config": runner.for_latency().describe(),
        "phase_s": phases,
        "timing_copies": copies,  # copies of the last gallery image filling the largest timing batch
        "files_sha256": files,  # what was measured: the summary checks it against the build's record
        "cpu_identity": cpu_identity(),
    })
    save_mat(out, mat)
    write_json(timing_out, timing)
    return timing


def distractor_paths(folder: Path, count: int) -> list[Path]:
    """The first ``count`` distractor images of ``folder`` (any .jpg below it), in sorted order."""
    paths = sorted(Path(folder).rglob("*.jpg"))
    if not paths:
        raise ReidQuantError(f"{folder}: no distractor images (.jpg) in it")
    return paths[:count]


def shard_of(paths: list, item: str) -> list:
    """Shard ``item`` ("2-of-4", as Snakemake's scatter names it) of ``paths``: contiguous slices
    that together are ``paths`` in order."""
    try:
        index, count = (int(part) for part in item.split("-of-"))
    except ValueError:
        raise ReidQuantError(f"shard {item!r}: expected <i>-of-<n>") from None
    if not 1 <= index <= count:
        raise ReidQuantError(f"shard {item!r}: i must be from 1 to n")
    return list(np.array_split(np.array(paths, dtype=object), count)[index - 1])


def embed_distractors(name: str, artifact: Path, record: Path, spec: dict, device: str, folder: Path, count: int,
                      shard: str, out: Path, settings: ExtractSettings, trust_compiled: bool = False) -> int:
    """One shard of the distractor images embedded by variant ``name`` (its artifact checked
    against its build ``record``), as the extraction embeds the gallery (flip, scales), into
    ``out`` (.npy); untimed. Returns its size."""
    threads = set_threads(settings.threads)
    paths = shard_of(distractor_paths(folder, count), shard)
    missing = hardware_reason(spec, device)
    if missing:  # as the extraction records it: this node cannot run the variant there
        not_run = not_run_record(name, device, missing)
        with atomic_path(Path(out)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.array(json.dumps({"not_run": not_run})), allow_pickle=False)
        return 0
    verify_artifact(artifact, record)
    runner = load_runner(artifact, spec, device, name, trust_compiled)
    print(f"variant {name}: distractor shard {shard}: {len(paths)} images on {threads} thread(s)", file=sys.stderr)
    embeddings = extract(runner, paths, settings.height, settings.width, settings.batch_size, settings.workers,
                         settings.ms, desc=f"distractors {shard}") if paths else np.zeros((0, 0), np.float32)
    with atomic_path(Path(out)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, embeddings, allow_pickle=False)
    return len(paths)


def gather_distractors(shards: list[Path], out: Path, record_out: Path, source: str, count: int,
                       invalidates=()) -> dict:
    """The shards' embeddings in order, into ``out`` (.npy); what went into it into ``record_out``.
    Each shard is checked first (``read_shard``). ``invalidates``: files made from a previous
    gather (its search, the search table), deleted first, so that a broken shard found here
    leaves nothing that looks up to date."""
    for stale in invalidates:
        Path(stale).unlink(missing_ok=True)
    sizes = [len(part) for part in np.array_split(np.arange(count), len(shards))]
    parts = [read_shard(path, size) for path, size in zip(shards, sizes)]
    recorded = [part for part in parts if isinstance(part, dict)]
    if recorded:  # a node that could not run the variant: its record goes on
        with atomic_path(Path(out)) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.zeros((0, 0), np.float32), allow_pickle=False)
        write_json(record_out, recorded[0])
        return recorded[0]
    widths = [part.shape[1] for part in parts if len(part)]
    width = max(set(widths), key=widths.count) if widths else 0
    for path, part in zip(shards, parts):
        if len(part) and part.shape[1] != width:
            broken_shard(path, f"holds {part.shape[1]}-d embeddings, the other shards {width}-d")
    embeddings = np.concatenate([part.reshape(-1, width) for part in parts]).astype(np.float32)
    with atomic_path(Path(out)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, embeddings, allow_pickle=False)
    record = {"source": source, "count": count, "shards": [str(path) for path in shards],
              "per_shard": [len(part) for part in parts]}
    write_json(record_out, record)
    return record


def broken_shard(path: Path, problem: str):
    """Remove a broken shard, so that the next run embeds it again, and say so in one line."""
    Path(path).unlink(missing_ok=True)
    raise ReidQuantError(f"{path}: {problem}; removed it, so that the next run embeds that shard again")


def read_shard(path: Path, size: int):
    """One distractor shard: ``size`` finite float32 embeddings (rows), or the record of a node
    that could not run the variant. A shard that is anything else is removed (``broken_shard``)."""
    try:
        part = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        broken_shard(path, f"not a readable shard ({cause(error)})")
    if part.dtype.kind == "U" and part.ndim == 0:
        try:
            found = json.loads(str(part))
        except json.JSONDecodeError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("not_run"), dict):
            return found
        broken_shard(path, "holds text that is not a not-run record")
    if size == 0 and part.size == 0:
        return part.reshape(0, 0).astype(np.float32)
    if part.dtype != np.float32 or part.ndim != 2 or len(part) != size or part.shape[1] == 0:
        broken_shard(path, f"holds {part.dtype} of shape {part.shape}, not the {size} float32 embeddings "
                           f"(rows) of its images")
    if not np.isfinite(part).all():
        broken_shard(path, "holds embeddings that are not finite")
    return part
