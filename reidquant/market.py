"""Market-1501 on disk: file names, the raw release, and the prepared per-identity layout.

The prepared layout is the reference project's ``prepare.py`` output, one folder per
identity under ``query gallery train_all train val multi-query``, with one difference:
files are visited in sorted order, so the "first image of each identity goes to val"
split is the same on every file system.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_dir, read_json

RAW_NAME = "Market-1501-v15.09.15"
RAW_FOLDERS = ("bounding_box_train", "bounding_box_test", "query", "gt_bbox")
PREPARED_FOLDERS = ("query", "gallery", "train_all", "train", "val", "multi-query")
# bounding_box_train, bounding_box_test (with junk), query, and identities in each.
REAL_COUNTS = {"train_images": 12936, "train_ids": 751, "query_images": 3368,
               "gallery_images": 19732, "test_ids": 750}
PREPARED_MARKER = "prepared.json"

_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d+)_(\d{6})_(\d{2})\.jpg$")


@dataclass(frozen=True)
class ImageName:
    identity: int
    camera: int
    sequence: int
    frame: int
    box: int


def parse_name(name: str, where: str | os.PathLike = "") -> ImageName:
    """Parse ``PPPP_cCsS_FFFFFF_BB.jpg``; identity -1 is junk and 0 a distractor."""
    match = _NAME.match(name)
    if not match or not 1 <= int(match.group(2)) <= 6:
        place = f"{where}/{name}" if where else name
        raise ReidQuantError(
            f"{place}: file name does not follow Market-1501's PPPP_cCsS_FFFFFF_BB.jpg "
            f"(camera 1-6)")
    pid, cam, seq, frame, box = match.groups()
    return ImageName(int(pid), int(cam), int(seq), int(frame), int(box))


def format_name(identity: int, camera: int, sequence: int, frame: int, box: int) -> str:
    pid = "-1" if identity == -1 else f"{identity:04d}"
    return f"{pid}_c{camera}s{sequence}_{frame:06d}_{box:02d}.jpg"


def identity_folder(identity: int) -> str:
    return "-1" if identity == -1 else f"{identity:04d}"


def list_images(folder: Path) -> list[str]:
    """Sorted ``.jpg`` names of a raw folder; other files (the release ships Thumbs.db) are skipped."""
    names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".jpg"))
    for name in names:
        parse_name(name, folder)
    return names


def check_raw(raw: Path, require_full: bool = False) -> dict:
    """Check a raw Market-1501 folder; return its image and identity counts."""
    raw = Path(raw)
    if not raw.is_dir():
        raise ReidQuantError(f"{raw}: Market-1501 folder not found")
    for folder in RAW_FOLDERS:
        if not (raw / folder).is_dir():
            raise ReidQuantError(f"{raw}: missing folder {folder}/ (expected {', '.join(RAW_FOLDERS)})")
    train = list_images(raw / "bounding_box_train")
    gallery = list_images(raw / "bounding_box_test")
    query = list_images(raw / "query")
    list_images(raw / "gt_bbox")
    counts = {
        "train_images": len(train),
        "train_ids": len({parse_name(n).identity for n in train}),
        "query_images": len(query),
        "gallery_images": len(gallery),
        "test_ids": len({parse_name(n).identity for n in query}),
    }
    for key, value in counts.items():
        if value == 0 and key.endswith("images"):
            raise ReidQuantError(f"{raw}: no images in {_folder_of(key)}/")
    if require_full:
        for key, expected in REAL_COUNTS.items():
            if counts[key] != expected:
                raise ReidQuantError(
                    f"{raw}: {counts[key]} {key.replace('_', ' ')}, the complete Market-1501 has "
                    f"{expected}; the dataset is incomplete or not Market-1501 (to run on a subset, set "
                    f"dataset.check_counts: false)")
    return counts


def _folder_of(key: str) -> str:
    return {"train_images": "bounding_box_train", "query_images": "query",
            "gallery_images": "bounding_box_test"}[key]


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepared_plan(raw: Path) -> dict[str, list[tuple[Path, str]]]:
    """For each prepared folder, the (source file, identity folder) pairs it receives."""
    raw = Path(raw)
    plan: dict[str, list[tuple[Path, str]]] = {name: [] for name in PREPARED_FOLDERS}
    for source, target in (("query", "query"), ("gt_bbox", "multi-query"),
                           ("bounding_box_test", "gallery"), ("bounding_box_train", "train_all")):
        for name in list_images(raw / source):
            plan[target].append((raw / source / name, identity_folder(parse_name(name).identity)))
    seen: set[str] = set()
    for src, folder in plan["train_all"]:
        plan["val" if folder not in seen else "train"].append((src, folder))
        seen.add(folder)
    return plan


def prepare(raw: Path, out: Path, require_full: bool = False) -> dict:
    """Write the prepared layout under ``out`` atomically; an existing complete one is kept."""
    raw, out = Path(raw), Path(out)
    marker = out / PREPARED_MARKER
    if marker.exists():
        return read_json(marker)
    counts = check_raw(raw, require_full=require_full)
    summary = {"raw": str(raw), **counts}
    with atomic_dir(out) as staging:  # an existing folder without the marker is an interrupted attempt
        for target, files in prepared_plan(raw).items():
            for src, folder in files:
                (staging / target / folder).mkdir(parents=True, exist_ok=True)
                _link_or_copy(src, staging / target / folder / src.name)
        (staging / PREPARED_MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def list_prepared(root: Path, part: str) -> list[Path]:
    """Image paths of a prepared folder in torchvision ImageFolder order (sorted folders, sorted files)."""
    folder = Path(root) / part
    if not folder.is_dir():
        raise ReidQuantError(f"{folder}: prepared folder not found (run the prepare step)")
    paths = []
    for identity in sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()):
        paths.extend(sorted((folder / identity).glob("*.jpg")))
    if not paths:
        raise ReidQuantError(f"{folder}: no images")
    return paths


def labels_and_cameras(paths) -> tuple[list[int], list[int]]:
    """Identity and camera of each image, as the reference test script reads them from names."""
    names = [parse_name(Path(p).name, Path(p).parent) for p in paths]
    return [n.identity for n in names], [n.camera for n in names]


def spread(paths: list[Path], count: int) -> list[Path]:
    """``count`` of ``paths`` spread evenly over them, first and last included (all of them
    when there are no more than ``count``)."""
    if len(paths) <= count:
        return list(paths)
    step = (len(paths) - 1) / max(count - 1, 1)
    return [paths[round(i * step)] for i in range(count)]
