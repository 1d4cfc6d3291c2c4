"""Downloads and archives: verified, resumable, and never half-written under the final name."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_dir

CHUNK = 1 << 20
DRIVE_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"


def drive_url(file_id: str) -> str:
    return DRIVE_URL.format(id=file_id)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60) -> Path:
    """Fetch ``url`` to ``dest``. A partial ``dest.part`` is resumed when the server allows it.

    The file is renamed to ``dest`` only after the checksum (when given) matches; a
    mismatching download is deleted.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = offset and response.status == 206
            if not resumed:
                offset = 0  # the server ignored the range: start over
            total = response.headers.get("Content-Length")
            total = int(total) + offset if total is not None else None
            with open(part, "ab" if resumed else "wb") as handle, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size != total:
                raise ReidQuantError(f"{url}: download ended early ({part.stat().st_size} of {total} bytes); "
                                     f"run again to resume")
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to fetch: the part is complete
            pass
        else:
            raise ReidQuantError(f"{url}: HTTP {error.code} {error.reason}; download it by hand to {dest}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ReidQuantError(f"cannot download {url} ({reason}); download it by hand and put it at {dest}") from None
    if sha256:
        actual = sha256_of(part)
        if actual.lower() != sha256.lower():
            part.unlink()
            raise ReidQuantError(f"{url}: sha256 mismatch (expected {sha256.lower()}, got {actual}); "
                                 f"the download was deleted")
    os.replace(part, dest)
    return dest


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ReidQuantError(f"{archive}: entry {name!r} would be written outside the target folder; refusing")
    return path


def extract_zip(archive: Path, dest: Path, inner: str | None = None) -> Path:
    """Extract ``archive`` so that ``dest`` appears complete or not at all.

    ``inner`` names the folder inside the archive that becomes ``dest`` (found at any depth);
    without it the archive's whole content does.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.exists():
        raise ReidQuantError(f"{archive}: archive not found")
    with atomic_dir(dest) as staging:
        try:
            with zipfile.ZipFile(archive) as zipped:
                members = zipped.infolist()
                for member in members:
                    _safe_member(member.filename, archive)
                for member in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                    zipped.extract(member, staging)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise ReidQuantError(f"{archive}: truncated or corrupt zip ({error}); download it again") from None
        if inner is not None:
            found = sorted(p for p in staging.rglob(inner) if p.is_dir())
            if not found:
                raise ReidQuantError(f"{archive}: no folder {inner}/ inside the archive")
            # the inner folder becomes the staged folder itself
            kept = staging.with_name(staging.name + ".inner")
            os.replace(found[0], kept)
            shutil.rmtree(staging)
            os.replace(kept, staging)
    return dest


def fetch_checkpoint(source: str, folder: Path, sha256: str | None = None) -> Path:
    """A reference-format checkpoint folder from a URL or a Google Drive file id.

    A URL ending in ``.pth`` is ``net_last.pth`` with ``opts.yaml`` beside it; anything
    else (a Drive id included) is a zip of the checkpoint folder, as the reference project
    shares its models. ``sha256`` checks the file downloaded from ``source``.
    """
    folder = Path(folder)
    url = source if source.startswith(("http://", "https://")) else drive_url(source)
    if url.split("?")[0].endswith(".pth"):
        download(url.rsplit("/", 1)[0] + "/opts.yaml", folder / "opts.yaml")
        download(url, folder / "net_last.pth", sha256=sha256)
        return folder
    archive = download(url, folder / "checkpoint.zip", sha256=sha256)
    unpacked = extract_zip(archive, folder / "unpacked")
    found = sorted(p.parent for p in unpacked.rglob("net_last.pth") if (p.parent / "opts.yaml").exists())
    if not found:
        raise ReidQuantError(f"{source}: the archive holds no folder with net_last.pth and opts.yaml")
    for name in ("opts.yaml", "net_last.pth"):  # net_last.pth last: its presence means complete
        os.replace(found[0] / name, folder / name)
    shutil.rmtree(unpacked)
    archive.unlink()
    return folder

