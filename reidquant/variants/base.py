"""What every variant type module uses, below the registry that imports them all."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from reidquant.errors import ReidQuantError, cause
from reidquant.jsonio import read_json

# What a build records about itself next to what it deploys: the type, the saturation guard it
# used, the CPU it was built on, and what its load needs to know of the build (plain JSON).
BUILD_RECORD = "build.json"


def build_record(folder: Path) -> dict:
    """What the build of the artifact in ``folder`` recorded."""
    path = Path(folder) / BUILD_RECORD
    if not path.is_file():
        raise ReidQuantError(f"{path}: not found; the folder was not written by this version's quantize "
                             f"(build it again)")
    return read_json(path, required=("type", "cpu_model", "cpu_isa"))


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


def guarded(spec: dict, option: str, isa: str, auto) -> tuple[dict, dict]:
    """``spec`` with its saturation guard ``option`` decided (``auto`` is the value the type
    chose for the building CPU's int8 instruction set ``isa``), and the record of that choice
    for ``quantize.json`` and the artifact's ``build.json``."""
    setting = spec[option]
    used = auto if setting == "auto" else setting
    return {**spec, option: used}, {"option": option, "setting": setting, "used": used, "cpu_isa": isa}
