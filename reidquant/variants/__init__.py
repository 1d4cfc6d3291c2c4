"""Variant types: one module per type, and the registry that finds them.

A variant's ``type`` (in ``config/config.yaml``) names a module of this package. Each
module states everything about its type in one place:

- ``NAME``, ``ARTIFACT`` (the file ``load`` reads, in the variant's model folder) and
  ``WEIGHTS`` (the file whose bytes are its size);
- ``calibrated(spec)``: whether building it needs calibration images;
- ``unsupported_reason(spec, device)``: why it cannot run there, or None;
- ``precision(spec)`` and ``runtime(spec)``: the summary's labels for a row;
- ``build(name, spec, embedder, opts, example, calibration, path)`` and ``load(path, spec, device, name)``.

Its options and their defaults are the type's branch of the workflow's schema. Type modules
import torch and the runtimes inside ``build``/``load`` only: the workflow asks which device
can run which variant while it plans, where none of them need be installed.

Adding a type: a module here, its entry in ``TYPES``, its branch of the schema, a test.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from types import ModuleType

from reidquant.errors import ReidQuantError, cause
from reidquant.jsonio import atomic_dir
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
    return variant_type(spec).unsupported_reason(spec, device)


def is_calibrated(spec: dict) -> bool:
    return variant_type(spec).calibrated(spec)


def reports_sensitivity(spec: dict) -> bool:
    """Whether building it measures each quantized layer's fidelity (types with
    ``reports_sensitivity``; their ``build`` then takes ``validation`` batches)."""
    kind = variant_type(spec)
    return hasattr(kind, "reports_sensitivity") and kind.reports_sensitivity(spec)


def describe(kind: str) -> str:
    """What a type is, in one line: its module's docstring opening, without the name."""
    first = TYPES[kind].__doc__.strip().split("\n\n")[0].replace("\n", " ")
    return first.split(": ", 1)[1].rstrip(".")


def labels(spec: dict) -> dict:
    """The summary's ``precision`` and ``runtime`` of a row (read on the machine that runs it)."""
    kind = variant_type(spec)
    return {"precision": kind.precision(spec), "runtime": kind.runtime(spec)}


@contextlib.contextmanager
def stage(variant: str, what: str):
    """A failure inside a third-party conversion, calibration or compile step becomes one line
    naming the variant and the step; the original traceback stays chained for the log. The
    step's duration goes to the log, where a slow run is looked into."""
    start = time.perf_counter()
    try:
        yield
    except ReidQuantError:
        raise
    except Exception as error:
        raise ReidQuantError(f"variant {variant}: {what} failed: {cause(error)}") from error
    print(f"variant {variant}: {what} took {time.perf_counter() - start:.1f} s", file=sys.stderr)


def build_artifact(name: str, spec: dict, embedder, opts: dict, example, calibration: list, folder: Path,
                   validation: list = (), selection=None) -> dict:
    """Make variant ``name`` from an fp32 embedder; write what it deploys into ``folder``.

    ``example`` is a batch of two inputs (the shape graph exports trace);
    ``calibration`` the calibration batches, empty for a type that is not calibrated;
    ``validation`` the batches a type that ``reports_sensitivity`` measures its layers on;
    ``selection`` what a variant with ``accuracy_control`` is validated on.
    """
    kind = variant_type(spec)
    start = time.perf_counter()
    extra = {"validation": validation} if reports_sensitivity(spec) else {}
    if selection is not None:
        extra["selection"] = selection
    with atomic_dir(folder) as staging:
        found = kind.build(name, spec, embedder, opts, example, calibration, staging / kind.ARTIFACT, **extra)
        size = (staging / kind.WEIGHTS).stat().st_size
    return {"variant": name, "type": kind.NAME, "size_bytes": size, "quantize_s": time.perf_counter() - start,
            **(found or {})}


def artifact_path(folder: Path, spec: dict) -> Path:
    """The file ``load`` reads in a variant's model folder; one line if it is not there."""
    kind = variant_type(spec)
    folder = Path(folder)
    path = folder / kind.ARTIFACT
    if not path.is_file():
        present = sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []
        if present:
            raise ReidQuantError(f"{folder}: holds {', '.join(present)} but no {kind.ARTIFACT}, the artifact of "
                                 f"type {kind.NAME} (was it built as another type?)")
        raise ReidQuantError(f"{folder}: variant artifact not found (build it with quantize)")
    return path


def load_runner(folder: Path, spec: dict, device: str, name: str = "variant"):
    """A variant's artifact, loaded (and compiled, where its runtime compiles) for ``device``."""
    return variant_type(spec).load(artifact_path(folder, spec), spec, device, name)
