"""Reading PyTorch files without running code from them.

A pickle can name any Python callable, and unpickling calls it: a crafted ``net_last.pth``,
``model.pt`` or ``resume.pt`` would run code the moment it is read. Every PyTorch file the
project reads goes through ``load_tensors`` (``torch.load(weights_only=True)``: tensors,
containers and plain values only), and a ``torch.export`` archive is checked by
``check_export_archive`` before ``torch.export.load`` opens it, since that loader falls back
to full unpickling for some of its entries.

A ``torch.export`` program's JSON may also carry Python source that loading runs: torch
2.14's unlifting ``exec``s each string of a model's ``guards_code``. An archive is refused
unless that field is empty.

A compiled package (AOTInductor's, which a ``pt2e_int8`` build makes) is different in kind: its
shared library is native code, the model's own kernels, which loading it runs. Such a package
is loaded only when it is byte for byte the one its build recorded, holds nothing a loader
would unpickle, and was compiled by a build on this machine (``BUILT_HERE``, a registry
outside every results folder) or is trusted explicitly by the user (``trust_compiled``).

Every archive's entries are checked before anything is read from it: names are anchored to the
archive's one top folder and may not climb out of it (``..``) or be absolute.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
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
                    r"|models/[^/]+\.json|data/(weights|constants)/[^/]+_config\.json)")
_TENSOR_DATA = re.compile(r"data/(weights|constants)/(weight|tensor)_[^/.]+")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/[^/]+\.pt$")
_CONFIG = re.compile(r"data/(weights|constants)/[^/]+_config\.json")
_MODEL_JSON = re.compile(r"models/[^/]+\.json")


def _entries(archive: zipfile.ZipFile, path: Path) -> list[tuple[str, str]]:
    """Each entry's name and its name inside the archive's one top folder; an entry that is
    absolute, climbs out (``..``), is not normalised, or sits outside that folder is refused."""
    names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    for name in names:
        plain = name.rstrip("/")
        if ("\\" in name or name.startswith("/") or posixpath.normpath(plain) != plain
                or any(part in ("", ".", "..") for part in plain.split("/")) or len(tops) != 1):
            raise ReidQuantError(f"{path}: refused: entry {name!r} is not a plain path inside the archive's one "
                                 f"folder, and extracting or reading it could reach other files")
    return [(name, name.split("/", 1)[1] if "/" in name else "") for name in names]


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
        for name, inner in _entries(archive, path):
            if name.endswith("/") or _PLAIN.fullmatch(inner) or _TENSOR_DATA.fullmatch(inner):
                continue
            if _SAMPLE_INPUTS.fullmatch(inner):
                data = archive.read(name)
                if data:
                    load_tensors(f"{path}:{name}", "plain sample inputs", source=io.BytesIO(data))
                continue
            raise ReidQuantError(f"{path}: refused: entry {name} is not one torch.export.save writes for a "
                                 f"plain program, and loading it could run code")
        for name, inner in _entries(archive, path):
            if _CONFIG.fullmatch(inner):
                for fqn, payload in _json_entry(archive, name, path).get("config", {}).items():
                    pickled = not isinstance(payload, dict) or payload.get("use_pickle") or not str(
                        payload.get("path_name", "")).startswith(("weight_", "tensor_"))
                    if pickled:
                        raise ReidQuantError(f"{path}: refused: {fqn} is stored as a pickled object, and "
                                             f"unpickling it could run code")
            elif _MODEL_JSON.fullmatch(inner):
                check_program_json(_json_entry(archive, name, path), f"{path}:{name}")


def _json_entry(archive: zipfile.ZipFile, name: str, path: Path) -> dict:
    try:
        found = json.loads(archive.read(name))
    except (ValueError, zipfile.BadZipFile, OSError) as error:
        raise ReidQuantError(f"{path}: entry {name} is not readable JSON ({error})") from None
    if not isinstance(found, dict):
        raise ReidQuantError(f"{path}: entry {name} is not the JSON object torch.export.save writes")
    return found


# Fields of a serialized program that torch.export.load (2.14) turns into code it runs: the
# module's guards, Python source ``exec``d by unlifting.
CODE_FIELDS = ("guards_code",)
# Symbolic sizes (``expr_str``) are read by ``sympy.sympify``, which ``eval``s its text: only
# sympy's printed form of a size expression is let through, every name in it known.
SIZE_EXPRESSION_NAMES = frozenset({
    # sympy's constructors and constants, as ``srepr`` writes them
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
    "Equality", "Unequality", "And", "Or", "Not", "true", "false", "True", "False", "oo", "zoo", "nan",
    "Infinity", "NegativeInfinity", "One", "Zero", "NegativeOne", "Half", "precision",
    # assumptions a size symbol carries
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "infinite", "zero",
    "nonzero", "even", "odd", "commutative",
    # the size functions torch's deserializer gives sympify (torch/_export/serde/serialize.py)
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity"})
_SYMBOL_NAME = re.compile(r"[a-z]+[0-9]+")  # s31, u0: how torch names a size symbol
_EXPRESSION = re.compile(r"(?:'[a-z]+[0-9]+'|[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?|[\s(),=+\-*/])*")


def check_size_expression(text: str, where: str) -> None:
    """Refuse a symbolic size that is not sympy's printed form of one (``sympify`` would run it)."""
    names = re.findall(r"(?<!')\b[A-Za-z_][A-Za-z0-9_]*\b(?!')", text)
    unknown = [name for name in names if name not in SIZE_EXPRESSION_NAMES and not _SYMBOL_NAME.fullmatch(name)]
    if not isinstance(text, str) or "__" in text or not _EXPRESSION.fullmatch(text) or unknown:
        raise ReidQuantError(f"{where}: refused: {str(text)[:60]!r} is not a symbolic size, and reading it would "
                             f"run it as Python")


def check_program_json(program: dict, where: str) -> None:
    """Refuse a serialized program that carries source code its loading would execute, or a
    symbolic size that is anything but one."""
    def walk(value, trail):
        if isinstance(value, dict):
            for key, inner in value.items():
                field = ".".join([*trail, key])
                if key in CODE_FIELDS and inner:
                    raise ReidQuantError(f"{where}: refused: field {field} holds Python code, which loading the "
                                         f"program would run")
                if key == "expr_str":
                    check_size_expression(inner, f"{where} field {field}")
                walk(inner, [*trail, key])
        elif isinstance(value, list):
            for inner in value:
                walk(inner, trail)

    walk(program, [])


# The entries aoti_compile_and_package writes for a CPU model: its generated C++ sources, their
# metadata, the compiled library, and the archive's own markers.
_COMPILED = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                       r"|data/aotinductor/[^/]+/[^/]+\.(so|cpp|h|json))")


def check_compiled_package(path: Path, sha256: str, trust_compiled: bool = False) -> None:
    """Refuse a compiled package that is not the one its build recorded (``sha256``), that
    holds an entry AOTInductor does not write for a plain CPU model, or that no build on this
    machine compiled, unless ``trust_compiled``."""
    path = Path(path)
    try:
        digest = sha256_of(path)
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ReidQuantError(f"{path}: not a compiled package ({error})") from None
    if digest != sha256:
        raise ReidQuantError(f"{path}: refused: it is not the compiled package its build recorded (sha256 "
                             f"{digest[:12]}..., build.json says {sha256[:12]}...); build it again")
    with archive:
        for name, inner in _entries(archive, path):
            if not (name.endswith("/") or _COMPILED.fullmatch(inner)):
                raise ReidQuantError(f"{path}: refused: entry {name} is not one AOTInductor writes for a "
                                     "compiled model, and loading it could run code")
    if not trust_compiled and not built_here(digest):
        raise ReidQuantError(f"{path}: refused: a compiled package is native code, which loading runs, and no "
                             f"build on this machine made this one (not in {built_here_path()}); load only "
                             f"packages you built, or trust it explicitly (config field trust_compiled: true, "
                             f"--trust-compiled on the command line)")


# Where builds on this machine record the compiled packages they made (one sha256 a line):
# outside every results folder, so a copied or tampered folder cannot vouch for itself.
BUILT_HERE_ENV = "REIDQUANT_BUILT_HERE"


def built_here_path() -> Path:
    """``$REIDQUANT_BUILT_HERE``, else ``$XDG_DATA_HOME/reidquant/compiled_packages`` (by
    default under ``~/.local/share``)."""
    if os.environ.get(BUILT_HERE_ENV):
        return Path(os.environ[BUILT_HERE_ENV])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "reidquant" / "compiled_packages"


def record_built_here(path: Path) -> str:
    """Record that this machine compiled the package at ``path``; its sha256."""
    digest = sha256_of(path)
    registry = built_here_path()
    try:
        registry.parent.mkdir(parents=True, exist_ok=True)
        with open(registry, "a") as handle:  # one short line an append: whole even beside another job
            handle.write(digest + "\n")
    except OSError as error:
        raise ReidQuantError(f"{registry}: cannot record the compiled package built here ({error.strerror}); "
                             f"set {BUILT_HERE_ENV} to a file this user can write") from None
    return digest


def built_here(digest: str) -> bool:
    try:
        return digest in built_here_path().read_text().split()
    except OSError:
        return False


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
