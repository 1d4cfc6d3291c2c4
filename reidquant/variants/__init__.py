"""Variant types: one module per type, and the registry that finds them.

A variant's ``type`` (in ``config/config.yaml``) names a module of this package. Each
module states everything about its type in one place:

- ``NAME``, ``ARTIFACT`` (the file ``load`` reads, in the variant's model folder) and
  ``WEIGHTS`` (the file whose bytes are its size);
- ``calibrated(spec)``: whether building it needs calibration images;
- ``unsupported_reason(spec, device)``: why it cannot run on that device anywhere, or None;
- optionally ``hardware_reason(spec, device)``: why it cannot run there on this machine (no
  native bfloat16, say): decided by the job on its node, never while planning;
- ``precision(spec)`` and ``runtime(spec)``: the summary's labels for a row;
- ``build(name, spec, embedder, opts, example, calibration, path)`` and ``load(path, spec, device, name,
  trust_compiled)`` (``trust_compiled``: a compiled program not built on this machine may load);
- optionally ``resolve(spec, isa)``: its int8 saturation guard decided for the building CPU;
- optionally ``measures_sensitivity(spec)`` and ``sensitivity(name, spec, folder, embedder,
  opts, calibration, validation)``: per-layer sensitivity of a built artifact;
- optionally ``ranked(spec)``: its build then takes ``ranking``, the layers of its fully int8
  network most sensitive first;
- optionally ``check(spec, where)``: what the schema cannot say, in one line.

Its options and their defaults are the type's branch of the workflow's schema. Type modules
import torch and the runtimes inside ``build``/``load`` only: the workflow asks which device
can run which variant while it plans, where none of them need be installed.

Adding a type: a module here, its entry in ``TYPES``, its branch of the schema, a test.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

from reidquant.devices import cpu_isa, cpu_model, device_available
from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_dir, read_json, write_json
from reidquant.safeload import sha256_of
from reidquant.variants.base import BUILD_RECORD, build_record
from reidquant.variants import dynamic_fp16, eager_int8, fp32, half, onnxruntime, openvino, pt2e_int8

TYPES: dict[str, ModuleType] = {module.NAME: module for module in (
    fp32, half, eager_int8, dynamic_fp16, pt2e_int8, openvino, onnxruntime)}


def variant_type(spec: dict) -> ModuleType:
    kind = spec.get("type")
    if kind not in TYPES:
        raise ReidQuantError(f"variant type {kind!r} is not one of {', '.join(TYPES)}")
    return TYPES[kind]


def complete(spec: dict, where: str = "variant spec") -> dict:
    """``spec`` checked against its type's schema, with that schema's defaults filled in."""
    from reidquant.configcheck import checked, schema_part

    spec = checked(spec, schema_part("variants"), where)
    kind = variant_type(spec)
    if hasattr(kind, "check"):  # what a schema cannot say in one clear line
        kind.check(spec, where)
    return spec


def unsupported_reason(spec: dict, device: str) -> str | None:
    """Why the variant cannot run on ``device`` anywhere (decided while the workflow plans)."""
    return variant_type(spec).unsupported_reason(spec, device)


def hardware_reason(spec: dict, device: str) -> str | None:
    """Why it cannot run on ``device`` on this machine (decided by the job on the node that runs
    it): no CUDA device, or no native bfloat16 on this CPU."""
    if not device_available(device):
        return "no CUDA device"
    kind = variant_type(spec)
    return kind.hardware_reason(spec, device) if hasattr(kind, "hardware_reason") else None


def is_calibrated(spec: dict) -> bool:
    return variant_type(spec).calibrated(spec)


def measures_sensitivity(spec: dict) -> bool:
    """Whether the per-layer sensitivity analysis measures it (types with ``sensitivity``)."""
    kind = variant_type(spec)
    return hasattr(kind, "measures_sensitivity") and kind.measures_sensitivity(spec)


def needs_ranking(spec: dict) -> bool:
    """Whether its build chooses layers by the per-layer sensitivity of its fully int8 network."""
    kind = variant_type(spec)
    return hasattr(kind, "ranked") and kind.ranked(spec)


def unranked(spec: dict) -> dict:
    """The fully int8 build a ranked variant chooses its float layers from: the same spec,
    nothing left in float, no budget."""
    return {**spec, "float_modules": [], "accuracy_control": None, "sensitivity": True}


def measure_sensitivity(name: str, spec: dict, folder: Path, embedder, opts: dict, calibration: list,
                        validation: list) -> list[dict]:
    """One row per quantized layer of the artifact built in ``folder`` (``reidquant.sensitivity``)."""
    kind = variant_type(spec)
    if not measures_sensitivity(spec):
        raise ReidQuantError(f"variant {name}: per-layer sensitivity is not measured for type {kind.NAME} "
                             f"with these settings")
    return kind.sensitivity(name, deployed_spec(folder, spec), folder, embedder, opts, calibration, validation)


def describe(kind: str) -> str:
    """What a type is, in one line: its module's docstring opening, without the name."""
    first = TYPES[kind].__doc__.strip().split("\n\n")[0].replace("\n", " ")
    return first.split(": ", 1)[1].rstrip(".")


def labels(spec: dict) -> dict:
    """The summary's ``precision`` and ``runtime`` of a row (read on the machine that runs it)."""
    kind = variant_type(spec)
    return {"precision": kind.precision(spec), "runtime": kind.runtime(spec)}


def resolve(spec: dict, isa: str) -> tuple[dict, dict | None]:
    """``spec`` with its int8 saturation guard decided for a CPU of int8 instruction set
    ``isa`` (``auto`` resolved by the type), and the record of that choice (None for types
    without one)."""
    kind = variant_type(spec)
    return kind.resolve(spec, isa) if hasattr(kind, "resolve") else (spec, None)


def build_artifact(name: str, spec: dict, embedder, opts: dict, example, calibration: list, folder: Path,
                   ranking: list = (), selection=None) -> dict:
    """Make variant ``name`` from an fp32 embedder; write what it deploys into ``folder``, with
    the build's record (``build.json``).

    ``example`` is a batch of two inputs (the shape graph exports trace);
    ``calibration`` the calibration batches, empty for a type that is not calibrated;
    ``ranking`` the layers, most sensitive first, a variant that ``needs_ranking`` chooses from;
    ``selection`` what a variant with ``accuracy_control`` is validated on.
    """
    kind = variant_type(spec)
    start = time.perf_counter()
    spec, guard = resolve(spec, cpu_isa())
    record = {"variant": name, "type": kind.NAME, "saturation_guard": guard, "cpu_model": cpu_model(),
              "cpu_isa": cpu_isa()}
    extra = {"ranking": list(ranking)} if needs_ranking(spec) else {}
    if selection is not None:
        extra["selection"] = selection
    with atomic_dir(folder) as staging:
        found = kind.build(name, spec, embedder, opts, example, calibration, staging / kind.ARTIFACT, **extra) or {}
        # What loading the artifact needs to know of its build goes into its record too.
        record.update(found.pop("deploy", {}))
        size = (staging / kind.WEIGHTS).stat().st_size
        write_json(staging / BUILD_RECORD, record)
        digests = folder_sha256(staging)
    return {**record, "size_bytes": size, "quantize_s": time.perf_counter() - start, "files_sha256": digests,
            **found}


# What Snakemake writes into a folder it made as a job's output; no loader reads it.
SNAKEMAKE_MARKER = ".snakemake_timestamp"


def folder_sha256(folder: Path) -> dict[str, str]:
    """The sha256 of every file in an artifact folder, by its path inside it."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): sha256_of(path) for path in sorted(folder.rglob("*"))
            if (path.is_file() or path.is_symlink()) and path.relative_to(folder).as_posix() != SNAKEMAKE_MARKER}


def verify_artifact(folder: Path, record_path: Path) -> dict:
    """Check that the artifact folder holds exactly the files its build recorded in
    ``record_path`` (the build's record outside the folder: quantize.json), byte for byte;
    the record. A file swapped, added or gone is one line saying how to rebuild it."""
    folder, record_path = Path(folder), Path(record_path)
    if not record_path.is_file():
        raise ReidQuantError(f"{record_path}: not found: the build's record of {folder}, which holds the sha256 of "
                             f"every file it wrote (give it with --record, or rebuild the artifact)")
    record = read_json(record_path, required=("files_sha256",))
    rebuild = (f"rebuild it (python -m reidquant quantize; in the workflow: snakemake --cores 4 results/summary.csv "
               f"--forcerun {record_path})")
    if not folder.is_dir():
        raise ReidQuantError(f"{folder}: the artifact {record_path} records is gone; {rebuild}")
    found, expected = folder_sha256(folder), record["files_sha256"]
    for name in sorted(set(found) | set(expected)):
        if name not in found:
            raise ReidQuantError(f"{folder / name}: recorded by its build in {record_path} but gone; {rebuild}")
        if name not in expected:
            raise ReidQuantError(f"{folder / name}: not a file its build wrote (not in {record_path}); {rebuild}")
        if found[name] != expected[name]:
            raise ReidQuantError(f"{folder / name}: not the file its build recorded in {record_path} (sha256 "
                                 f"{found[name][:12]}..., recorded {expected[name][:12]}...); {rebuild}")
    return record


def deployed_spec(folder: Path, spec: dict) -> dict:
    """``spec`` as the artifact in ``folder`` was built: its saturation guard as the build
    decided it. A spec naming another type, or another guard than the build used, is refused."""
    return as_built(spec, build_record(folder), Path(folder) / BUILD_RECORD)


def as_built(spec: dict, record: dict, where) -> dict:
    """``spec`` with the saturation guard its build ``record`` (build.json or quantize.json, at
    ``where``) says it used; a spec of another type or guard is one line."""
    if record.get("type") != spec["type"]:
        raise ReidQuantError(f"{where}: holds a {record.get('type')} variant, but the spec says type {spec['type']}")
    guard = record.get("saturation_guard")
    if not guard or guard["option"] not in spec:
        return spec
    option, used = guard["option"], guard["used"]
    if spec[option] not in ("auto", used):
        raise ReidQuantError(f"{where}: built with {option} {used!r}, but the spec says "
                             f"{spec[option]!r} (build it again with that setting)")
    return {**spec, option: used}


def artifact_path(folder: Path, spec: dict) -> Path:
    """The file ``load`` reads in a variant's model folder; one line if it is not there."""
    kind = variant_type(spec)
    folder = Path(folder)
    path = folder / kind.ARTIFACT
    if not path.is_file():
        present = sorted(entry.name for entry in folder.iterdir() if entry.name != BUILD_RECORD) \
            if folder.is_dir() else []
        if present:
            raise ReidQuantError(f"{folder}: holds {', '.join(present)} but no {kind.ARTIFACT}, the artifact of "
                                 f"type {kind.NAME} (was it built as another type?)")
        raise ReidQuantError(f"{folder}: variant artifact not found (build it with quantize)")
    return path


def load_runner(folder: Path, spec: dict, device: str, name: str = "variant", trust_compiled: bool = False):
    """A variant's artifact, loaded (and compiled, where its runtime compiles) for ``device``,
    as it was built (``deployed_spec``). A compiled program built on another machine loads
    only with ``trust_compiled``."""
    path = artifact_path(folder, spec)
    return variant_type(spec).load(path, deployed_spec(folder, spec), device, name, trust_compiled=trust_compiled)
