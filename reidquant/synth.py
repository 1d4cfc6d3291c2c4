"""A generated dataset in Market-1501's raw format, so the workflow runs with no download.

It is a re-identification task, not a colour lookup: an identity keeps its clothes (colours
and patterns), build, hair, bag and hat across cameras; each camera has its own lighting,
colour cast, blur, noise and background; every image has its own pose, scale, crop jitter
and sometimes an occluder; and some identities share an outfit and differ only in details.
Everything follows from one seed.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_dir
from reidquant.market import RAW_FOLDERS, format_name

HEIGHT, WIDTH = 128, 64
CAMERAS = 6
MAX_IDENTITIES = 1500


@dataclass(frozen=True)
class SynthSizes:
    """How big the dataset is; the fields, limits and defaults are ``dataset.synthetic`` in the
    workflow's schema."""

    train_ids: int
    test_ids: int
    images_per_camera: int      # per identity and camera it is seen by
    cameras_per_id: int         # 2..6 cameras see each identity
    distractors: int            # identity 0000 in the gallery
    junk: int                   # identity -1 in the gallery
    multi_query_per_query: int  # extra gt_bbox images per query
    seed: int

    @classmethod
    def from_settings(cls, settings: dict) -> SynthSizes:
        """Sizes from ``dataset.synthetic`` settings, the schema's defaults filling the rest."""
        from reidquant.configcheck import checked, schema_part

        return cls(**checked(settings, schema_part("dataset", "synthetic"), "dataset.synthetic"))

    def check(self) -> None:
        from reidquant.configcheck import checked, schema_part

        checked(asdict(self), schema_part("dataset", "synthetic"), "dataset.synthetic")
        if self.train_ids + self.test_ids > MAX_IDENTITIES:  # Market-1501 numbers identities 1..1501
            raise ReidQuantError(f"dataset.synthetic: train_ids + test_ids must be at most {MAX_IDENTITIES}")


def _colour(rng, saturation=(0.3, 1.0), value=(0.15, 0.95)):
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(int(255 * c) for c in rgb)


def random_identity(rng: np.random.Generator) -> dict:
    skin = [(241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 30)]
    hair = [(20, 15, 10), (60, 40, 20), (110, 70, 30), (200, 170, 100), (150, 150, 150), (140, 30, 20)]
    return {
        "top": _colour(rng), "top2": _colour(rng),
        "top_pattern": rng.choice(["plain", "stripes", "checks", "logo", "jacket"]),
        "bottom": _colour(rng, value=(0.1, 0.8)),
        "bottom_pattern": rng.choice(["trousers", "shorts", "skirt"]),
        "shoes": _colour(rng, saturation=(0.0, 0.4), value=(0.05, 0.9)),
        "skin": skin[rng.integers(len(skin))],
        "hair": hair[rng.integers(len(hair))],
        "hair_long": bool(rng.random() < 0.35),
        "hat": _colour(rng) if rng.random() < 0.2 else None,
        "bag": rng.choice(["none", "none", "backpack", "handbag", "shoulder"]),
        "bag_colour": _colour(rng, value=(0.1, 0.7)),
        "height": rng.uniform(0.82, 0.97),
        "width": rng.uniform(0.75, 1.2),
        "torso": rng.uniform(0.36, 0.44),
    }


def dress_alike(rng: np.random.Generator, person: dict, other: dict) -> dict:
    """Same outfit as ``other``; hair, build and bag stay the person's own."""
    twin = dict(person)
    for key in ("top", "top2", "top_pattern", "bottom", "bottom_pattern", "shoes"):
        twin[key] = other[key]
    return twin


def random_camera(rng: np.random.Generator) -> dict:
    return {
        "gain": rng.uniform(0.65, 1.25),
        "cast": rng.uniform(0.8, 1.2, size=3),
        "blur": rng.uniform(0.0, 1.3),
        "noise": rng.uniform(2.0, 9.0),
        "background": _colour(rng, saturation=(0.0, 0.35), value=(0.3, 0.8)),
        "floor": _colour(rng, saturation=(0.0, 0.3), value=(0.2, 0.6)),
        "texture": rng.choice(["plain", "bricks", "stripes", "gradient"]),
        "quality": int(rng.integers(70, 95)),
    }


def _background(draw: ImageDraw.ImageDraw, cam: dict, rng) -> None:
    bg, floor = cam["background"], cam["floor"]
    horizon = int(HEIGHT * rng.uniform(0.55, 0.75))
    draw.rectangle([0, 0, WIDTH, horizon], fill=bg)
    draw.rectangle([0, horizon, WIDTH, HEIGHT], fill=floor)
    shade = tuple(max(0, c - 35) for c in bg)
    if cam["texture"] == "bricks":
        for y in range(0, horizon, 8):
            draw.line([0, y, WIDTH, y], fill=shade)
            offset = 0 if (y // 8) % 2 else 8
            for x in range(offset, WIDTH, 16):
                draw.line([x, y, x, y + 8], fill=shade)
    elif cam["texture"] == "stripes":
        for x in range(int(rng.integers(0, 12)), WIDTH, 12):
            draw.rectangle([x, 0, x + 4, horizon], fill=shade)
    elif cam["texture"] == "gradient":
        for y in range(0, horizon, 4):
            t = y / max(1, horizon)
            draw.rectangle([0, y, WIDTH, y + 4], fill=tuple(int(c * (0.7 + 0.3 * t)) for c in bg))
    for _ in range(int(rng.integers(0, 3))):  # clutter: posts, signs
        x = int(rng.integers(0, WIDTH))
        draw.rectangle([x, int(rng.integers(0, horizon)), x + int(rng.integers(2, 8)), horizon],
                       fill=_colour(rng, value=(0.2, 0.7)))


def _person(draw: ImageDraw.ImageDraw, p: dict, rng) -> None:
    scale = p["height"] * rng.uniform(0.85, 1.0)
    h = HEIGHT * scale
    cx = WIDTH / 2 + rng.normal(0, 3)
    top = HEIGHT - h - rng.uniform(0, HEIGHT * 0.06) + rng.normal(0, 2)
    facing = 1 if rng.random() < 0.5 else -1
    half = WIDTH * 0.2 * p["width"] * rng.uniform(0.9, 1.05)
    head_r = h * 0.075
    neck = top + 2 * head_r
    waist = neck + h * p["torso"]
    feet = top + h
    stride = rng.uniform(0.0, 1.0) * half * 0.9

    # arms behind the torso, swinging with the stride
    for side in (-1, 1):
        sx = cx + side * half
        swing = side * stride * 0.4 * facing
        draw.polygon([(sx - 3, neck + 2), (sx + 3, neck + 2), (sx + swing + 3, waist + 4),
                      (sx + swing - 3, waist + 4)], fill=p["top"] if p["top_pattern"] != "jacket" else p["top2"])
        draw.ellipse([sx + swing - 3, waist + 2, sx + swing + 3, waist + 8], fill=p["skin"])
    if p["bag"] == "backpack":
        bx = cx - facing * half * 0.9
        draw.rectangle([bx - half * 0.6, neck + 3, bx + half * 0.6, waist - 2], fill=p["bag_colour"])
    # legs
    leg_w = half * 0.45
    for side in (-1, 1):
        hip = cx + side * half * 0.45
        foot = hip + side * stride * 0.5
        knee_y = waist + (feet - waist) * 0.5
        if p["bottom_pattern"] == "trousers":
            draw.polygon([(hip - leg_w, waist), (hip + leg_w, waist), (foot + leg_w * 0.8, feet - 3),
                          (foot - leg_w * 0.8, feet - 3)], fill=p["bottom"])
        else:
            draw.polygon([(hip - leg_w * 0.7, waist), (hip + leg_w * 0.7, waist), (foot + leg_w * 0.6, feet - 3),
                          (foot - leg_w * 0.6, feet - 3)], fill=p["skin"])
            if p["bottom_pattern"] == "shorts":
                draw.rectangle([hip - leg_w, waist, hip + leg_w, knee_y], fill=p["bottom"])
        draw.ellipse([foot - leg_w - 1, feet - 5, foot + leg_w + 2, feet], fill=p["shoes"])
    if p["bottom_pattern"] == "skirt":
        draw.polygon([(cx - half, waist), (cx + half, waist), (cx + half * 1.4, waist + (feet - waist) * 0.45),
                      (cx - half * 1.4, waist + (feet - waist) * 0.45)], fill=p["bottom"])
    # torso and its pattern
    draw.rectangle([cx - half, neck, cx + half, waist + 2], fill=p["top"])
    pattern = p["top_pattern"]
    if pattern == "stripes":
        for y in np.arange(neck + 2, waist, 5):
            draw.rectangle([cx - half, y, cx + half, y + 2], fill=p["top2"])
    elif pattern == "checks":
        for i, y in enumerate(np.arange(neck, waist, 5)):
            for j, x in enumerate(np.arange(cx - half, cx + half, 5)):
                if (i + j) % 2:
                    draw.rectangle([x, y, x + 4, y + 4], fill=p["top2"])
    elif pattern == "logo":
        draw.ellipse([cx - half * 0.45, neck + 5, cx + half * 0.45, neck + 5 + half * 0.9], fill=p["top2"])
    elif pattern == "jacket":
        draw.rectangle([cx - half, neck, cx - half * 0.25, waist + 2], fill=p["top2"])
        draw.rectangle([cx + half * 0.25, neck, cx + half, waist + 2], fill=p["top2"])
    if p["bag"] == "shoulder":
        draw.line([cx - half, neck + 1, cx + half, waist - 2], fill=p["bag_colour"], width=2)
        draw.rectangle([cx + half - 2, waist - 6, cx + half + 6, waist + 4], fill=p["bag_colour"])
    elif p["bag"] == "handbag":
        hx = cx + facing * (half + 3)
        draw.rectangle([hx - 4, waist, hx + 4, waist + 9], fill=p["bag_colour"])
    # head
    draw.ellipse([cx - head_r, top, cx + head_r, top + 2 * head_r], fill=p["skin"])
    draw.chord([cx - head_r, top - 1, cx + head_r, top + head_r * 1.3], 180, 360, fill=p["hair"])
    if p["hair_long"]:
        draw.rectangle([cx - head_r - 1, top + head_r * 0.6, cx + head_r + 1, neck + 5], fill=p["hair"])
        draw.ellipse([cx - head_r * 0.7, top + head_r * 0.5, cx + head_r * 0.7, top + 2 * head_r], fill=p["skin"])
    if p["hat"] is not None:
        draw.rectangle([cx - head_r - 1, top - 2, cx + head_r + 1, top + head_r * 0.5], fill=p["hat"])


def render(person: dict, camera: dict, rng: np.random.Generator) -> Image.Image:
    """One image of ``person`` seen by ``camera``; the pose and framing come from ``rng``."""
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    _background(draw, camera, rng)
    _person(draw, person, rng)
    if rng.random() < 0.15:  # occluder: a passer-by, a pole, a car
        x0 = rng.uniform(-10, WIDTH - 10)
        y0 = rng.uniform(HEIGHT * 0.3, HEIGHT * 0.8)
        draw.rectangle([x0, y0, x0 + rng.uniform(10, 30), HEIGHT], fill=_colour(rng))
    shift = rng.integers(-4, 5, size=2)
    image = image.transform(image.size, Image.AFFINE, (1, 0, int(shift[0]), 0, 1, int(shift[1])),
                            fillcolor=camera["floor"])
    blur = camera["blur"] + rng.uniform(0, 0.4)
    if blur > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * camera["gain"] * rng.uniform(0.9, 1.1) * camera["cast"]
    pixels += rng.normal(0, camera["noise"], size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class _Writer:
    """Writes images with unique Market names (frame numbers increase per camera)."""

    def __init__(self, root: Path, rng: np.random.Generator, cameras: list[dict]):
        self.root, self.rng, self.cameras = root, rng, cameras
        self.frames = [0] * (CAMERAS + 1)

    def write(self, folder: str, identity: int, person: dict, camera: int) -> None:
        self.frames[camera] += int(self.rng.integers(1, 40))
        name = format_name(identity, camera, 1, self.frames[camera], 1)
        image = render(person, self.cameras[camera], self.rng)
        image.save(self.root / folder / name, quality=self.cameras[camera]["quality"])


def generate(out: Path, sizes: SynthSizes, progress: bool = True) -> dict:
    """Write the dataset under ``out`` (a Market-1501-v15.09.15-style folder), atomically."""
    sizes.check()
    out = Path(out)
    rng = np.random.default_rng(sizes.seed)
    cameras = [None] + [random_camera(rng) for _ in range(CAMERAS)]
    n_people = sizes.train_ids + sizes.test_ids
    identities = rng.permutation(np.arange(1, MAX_IDENTITIES + 1))[:n_people]
    people = {}
    for pid in identities:
        person = random_identity(rng)
        if people and rng.random() < 0.2:
            person = dress_alike(rng, person, people[list(people)[int(rng.integers(len(people)))]])
        people[int(pid)] = person
    train_ids = sorted(int(p) for p in identities[:sizes.train_ids])
    test_ids = sorted(int(p) for p in identities[sizes.train_ids:])

    with atomic_dir(out) as staging:
        for folder in RAW_FOLDERS:
            (staging / folder).mkdir()
        writer = _Writer(staging, rng, cameras)
        per_id = sizes.cameras_per_id * sizes.images_per_camera
        total = (n_people * per_id + sizes.test_ids * sizes.cameras_per_id * (1 + sizes.multi_query_per_query)
                 + sizes.distractors + sizes.junk)
        with tqdm(total=total, desc="synthetic dataset", unit="img", disable=not progress) as bar:
            for pid in train_ids + test_ids:
                seen_by = sorted(rng.choice(np.arange(1, CAMERAS + 1), sizes.cameras_per_id, replace=False))
                folder = "bounding_box_train" if pid in train_ids else "bounding_box_test"
                for cam in seen_by:
                    for _ in range(sizes.images_per_camera):
                        writer.write(folder, pid, people[pid], int(cam))
                        bar.update()
                    if pid in test_ids:
                        writer.write("query", pid, people[pid], int(cam))
                        for _ in range(sizes.multi_query_per_query):
                            writer.write("gt_bbox", pid, people[pid], int(cam))
                        bar.update(1 + sizes.multi_query_per_query)
            for _ in range(sizes.distractors):  # people nobody queries for
                writer.write("bounding_box_test", 0, random_identity(rng), int(rng.integers(1, CAMERAS + 1)))
                bar.update()
            for _ in range(sizes.junk):  # bad detections: background only, or a sliver of a person
                cam = int(rng.integers(1, CAMERAS + 1))
                writer.frames[cam] += 1
                name = format_name(-1, cam, 1, writer.frames[cam], 1)
                image = render(random_identity(rng), cameras[cam], rng)
                crop = image.crop((0, int(rng.integers(0, HEIGHT // 2)), WIDTH, HEIGHT)).resize((WIDTH, HEIGHT))
                crop.save(staging / "bounding_box_test" / name, quality=cameras[cam]["quality"])
                bar.update()
    return {"train_ids": len(train_ids), "test_ids": len(test_ids)}


def generate_distractors(out: Path, count: int, seed: int = 0, progress: bool = True) -> dict:
    """``count`` images of people nobody queries for (identity 0000), seen by the cameras of the
    dataset generated with ``seed``, into the folder ``out``, atomically: the gallery of a
    city, where almost everyone is a stranger (the real Market-1501 has a 500k set of them)."""
    if count < 1:
        raise ReidQuantError(f"search.distractors.count: {count} distractors is nothing to search among")
    rng = np.random.default_rng(seed)
    cameras = [None] + [random_camera(rng) for _ in range(CAMERAS)]  # the dataset's: its first draws
    rng = np.random.default_rng([seed, 500_000])
    with atomic_dir(Path(out)) as staging:
        writer = _Writer(staging, rng, cameras)
        for _ in tqdm(range(count), desc="distractors", unit="img", disable=not progress):
            writer.write(".", 0, random_identity(rng), int(rng.integers(1, CAMERAS + 1)))
    return {"distractors": count, "seed": seed}
