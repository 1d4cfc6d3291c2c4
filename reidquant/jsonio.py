"""Files and folders written atomically, so a crash never leaves half of one under the final name.

They get the permissions the user's umask gives any new file (``tempfile`` would leave them
private to the owner, which colleagues on a shared cluster file system could not read).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from reidquant.errors import ReidQuantError


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale(path: Path) -> None:
    """Delete what an earlier write of ``path`` left when it was killed (SIGKILL skips every
    clean-up): its temporary siblings ``.<name>.<8 random characters>``. One writer per path
    at a time, as Snakemake's locks ensure for its outputs."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.????????"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; it becomes ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise ReidQuantError(f"{path}: is a folder; give a file's path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise ReidQuantError(f"{path}: cannot write here ({error.strerror})") from None
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty staging folder next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as error:
        raise ReidQuantError(f"{path}: cannot write here ({error.strerror})") from None
    os.chmod(staging, 0o777 & ~umask())
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, data) -> None:
    """Strict JSON: a NaN or an infinity, which strict readers refuse, is a bug here, not a value."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path, required=()) -> dict:
    """A record the project wrote (a JSON object with the ``required`` keys); a missing,
    damaged or mistyped one is one line naming the file, since a later step would otherwise
    fail far from the cause."""
    path = Path(path)
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReidQuantError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReidQuantError(f"{path}: not a readable JSON record ({error}); rerun the job that writes it") from None
    if not isinstance(found, dict):
        raise ReidQuantError(f"{path}: holds a JSON {type(found).__name__}, not the object the job writes; "
                             f"rerun the job that writes it")
    missing = [key for key in required if key not in found]
    if missing:
        raise ReidQuantError(f"{path}: has no {', '.join(missing)}; it was not written by this version's job "
                             f"(rerun the job that writes it)")
    return found
