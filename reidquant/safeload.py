"""Reading PyTorch files without running code from them.

A pickle can name any Python callable, and unpickling calls it: a crafted ``net_last.pth``,
``model.pt`` or ``resume.pt`` would run code the moment it is read. Every PyTorch file the
project reads goes through ``load_tensors`` (``torch.load(weights_only=True)``: tensors,
containers and plain values only), and a ``torch.export`` archive is checked by
``check_export_archive`` before ``torch.export.load`` opens it, since that loader falls back
to full unpickling for some of its entries.

A compiled package (AOTInductor's, which a ``pt2e_int8`` build makes) is different in kind: its
shared library is native code, the model's own kernels, which loading it runs. Such a package
is loaded only when it is byte for byte the one its build recorded (``check_compiled_package``)
and holds nothing a loader would unpickle; build your artifacts yourself.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

from reidquant.errors import ReidQuantError, cause


def _refusal(path, error: Exception) -> str | None:
    """One line for torch's weights-only refusal (its own message spans lines, with ANSI codes)."""
    text = str(error)
    if "Weights only load failed" not in text:
        return None
    found = re.search(r"GLOBAL ([\w.]+)", text)
    what = f" ({found.group(1)})" if found else ""
    return (f"{path}: refused: it holds Python objects{what}, not only tensors and plain values, and "
            f"unpickling them could run code")


def load_tensors(path, what: str, source=None):
    """``torch.load(path, weights_only=True)`` on the CPU; a refused or unreadable file is one
    line naming it (``what`` says what it should have been). ``source`` reads these bytes
    instead of the file, for an archive's entry."""
    import torch

    try:
        return torch.load(source if source is not None else path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged or refused file
        refused = _refusal(path, error)
        if refused:
            raise ReidQuantError(refused) from None
        raise ReidQuantError(f"{path}: not {what} ({cause(error)})") from None


# The entries torch.export.save writes; every payload that a loader would unpickle must be
# absent, empty, or readable by the weights-only unpickler.
_PLAIN = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                    r"|models/[^/]+\.json|data/(weights|constants)/[^/]+_config\.json)$")
_TENSOR_DATA = re.compile(r"data/(weights|constants)/(weight|tensor)_[^/.]+$")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/[^/]+\.pt$")


def check_export_archive(path: Path) -> None:
    """Refuse a ``torch.export`` archive that carries anything ``torch.export.load`` would
    unpickle with code allowed: pickled weights or constants, script or opaque objects, legacy
    ``.pt`` payloads, or sample inputs beyond plain tensors."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ReidQuantError(f"{path}: not a torch.export archive ({error})") from None
    with archive:
        for name in archive.namelist():
            inner = name.split("/", 1)[1] if "/" in name else name
            if name.endswith("/") or _PLAIN.search(inner) or _TENSOR_DATA.search(inner):
                continue
            if _SAMPLE_INPUTS.search(inner):
                data = archive.read(name)
                if data:
                    load_tensors(f"{path}:{name}", "plain sample inputs", source=io.BytesIO(data))
                continue
            raise ReidQuantError(f"{path}: refused: entry {name} is not one torch.export.save writes for a "
                                 f"plain program, and loading it could run code")
        for name in archive.namelist():
            if name.endswith("_config.json") and "/data/" in name:
                for fqn, payload in json.loads(archive.read(name)).get("config", {}).items():
                    pickled = payload.get("use_pickle") or not str(payload.get("path_name", "")).startswith(
                        ("weight_", "tensor_"))
                    if pickled:
                        raise ReidQuantError(f"{path}: refused: {fqn} is stored as a pickled object, and "
                                             f"unpickling it could run code")


# The entries aoti_compile_and_package writes for a CPU model: its generated C++ sources, their
# metadata, the compiled library, and the archive's own markers.
_COMPILED = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                       r"|data/aotinductor/[^/]+/[^/]+\.(so|cpp|h|json))$")


def check_compiled_package(path: Path, sha256: str) -> None:
    """Refuse a compiled package that is not the one its build recorded (``sha256``), or that
    holds an entry AOTInductor does not write for a plain CPU model."""
    path = Path(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ReidQuantError(f"{path}: not a compiled package ({error})") from None
    if digest != sha256:
        raise ReidQuantError(f"{path}: refused: it is not the compiled package its build recorded (sha256 "
                             f"{digest[:12]}..., build.json says {sha256[:12]}...); build it again")
    with archive:
        for name in archive.namelist():
            inner = name.split("/", 1)[1] if "/" in name else name
            if not (name.endswith("/") or _COMPILED.search(inner)):
                raise ReidQuantError(f"{path}: refused: entry {name} is not one AOTInductor writes for a "
                                     "compiled model, and loading it could run code")
