import os

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import ImageFolder

from reidquant.errors import ReidQuantError
from reidquant.market import (
    PREPARED_FOLDERS,
    RAW_FOLDERS,
    check_raw,
    format_name,
    labels_and_cameras,
    list_prepared,
    parse_name,
    prepare,
)
from reidquant.synth import SynthSizes, generate

TINY = SynthSizes.from_settings(dict(train_ids=5, test_ids=4, images_per_camera=2, cameras_per_id=2, distractors=3,
                                     junk=2, multi_query_per_query=1, seed=3))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "Market-1501-v15.09.15"
    generate(out, TINY, progress=False)
    return out


def test_parse_and_format_names():
    assert parse_name("0002_c1s1_000451_03.jpg").identity == 2
    assert parse_name("-1_c3s2_012345_00.jpg").identity == -1
    name = parse_name("0000_c6s4_000001_01.jpg")
    assert (name.identity, name.camera) == (0, 6)
    assert format_name(-1, 3, 1, 42, 1) == "-1_c3s1_000042_01.jpg"
    for bad in ("0002_c7s1_000451_03.jpg", "2_c1s1_000451_03.jpg", "0002_c1s1_000451.jpg", "foo.jpg"):
        with pytest.raises(ReidQuantError, match="PPPP_cCsS_FFFFFF_BB"):
            parse_name(bad, "query")


def test_synthetic_is_in_market_format(raw):
    assert sorted(os.listdir(raw)) == sorted(RAW_FOLDERS)
    counts = check_raw(raw)
    assert counts["train_ids"] == 5 and counts["test_ids"] == 4
    gallery = [parse_name(n) for n in os.listdir(raw / "bounding_box_test")]
    assert sum(g.identity == 0 for g in gallery) == 3
    assert sum(g.identity == -1 for g in gallery) == 2
    train_ids = {parse_name(n).identity for n in os.listdir(raw / "bounding_box_train")}
    test_ids = {g.identity for g in gallery} - {0, -1}
    assert not train_ids & test_ids
    with Image.open(next((raw / "query").iterdir())) as image:
        assert image.size == (64, 128) and image.format == "JPEG"
    for name in os.listdir(raw / "query"):  # every query can be matched from another camera
        q = parse_name(name)
        assert any(g.identity == q.identity and g.camera != q.camera for g in gallery)


def test_synthetic_is_deterministic(raw, tmp_path):
    again = tmp_path / "again"
    generate(again, TINY, progress=False)
    for folder in RAW_FOLDERS:
        names = sorted(os.listdir(raw / folder))
        assert names == sorted(os.listdir(again / folder))
    first = sorted(os.listdir(raw / "query"))[0]
    assert (raw / "query" / first).read_bytes() == (again / "query" / first).read_bytes()


def test_identity_is_stable_across_cameras(raw):
    """Same person, other camera is closer (in mean colour of the body) than another person."""
    def colour(path):
        return np.asarray(Image.open(path), dtype=np.float32)[30:110, 16:48].mean(axis=(0, 1))
    by_id = {}
    for path in sorted((raw / "bounding_box_train").iterdir()):
        by_id.setdefault(parse_name(path.name).identity, []).append(colour(path))
    same = np.mean([np.linalg.norm(v[0] - v[-1]) for v in by_id.values()])
    ids = list(by_id)
    other = np.mean([np.linalg.norm(by_id[a][0] - by_id[b][0]) for a, b in zip(ids, ids[1:])])
    assert same < other


@pytest.mark.parametrize("field, value, message", [
    ("train_ids", 0, "dataset.synthetic field train_ids: 0 is less than the minimum of 2"),
    ("cameras_per_id", 1, "cameras_per_id: 1 is less than the minimum of 2"),
    ("junk", -1, "junk: -1 is less than the minimum of 0"),
    ("test_ids", 751, "test_ids: 751 is greater than the maximum of 750"),
])
def test_invalid_sizes(tmp_path, field, value, message):
    sizes = SynthSizes(**{**TINY.__dict__, field: value})
    with pytest.raises(ReidQuantError, match=message):
        generate(tmp_path / "x", sizes, progress=False)
    assert not (tmp_path / "x").exists()


def test_prepare_layout_matches_reference(raw, tmp_path):
    out = tmp_path / "pytorch"
    summary = prepare(raw, out)
    assert summary["query_images"] == len(os.listdir(raw / "query"))
    for folder in PREPARED_FOLDERS:
        assert (out / folder).is_dir()
    # val gets the first image (sorted) of each training identity, train the rest
    for identity in os.listdir(out / "train_all"):
        images = sorted(os.listdir(out / "train_all" / identity))
        assert os.listdir(out / "val" / identity) == images[:1]
        assert sorted(os.listdir(out / "train" / identity)) == images[1:]
    assert sorted(os.listdir(out / "gallery")) [:2] == ["-1", "0000"]
    src = raw / "query" / sorted(os.listdir(raw / "query"))[0]
    dst = next((out / "query").rglob(src.name))
    assert os.path.samefile(src, dst)  # hard link


def test_prepare_is_idempotent_and_restarts_after_interruption(raw, tmp_path):
    out = tmp_path / "pytorch"
    prepare(raw, out)
    stamp = (out / "prepared.json").stat().st_mtime_ns
    prepare(raw, out)
    assert (out / "prepared.json").stat().st_mtime_ns == stamp
    (out / "prepared.json").unlink()  # as after an interrupted run
    (out / "query" / "junkfile").write_text("x")
    prepare(raw, out)
    assert (out / "prepared.json").exists() and not (out / "query" / "junkfile").exists()


def test_row_order_is_imagefolder_order(raw, tmp_path):
    out = tmp_path / "pytorch"
    prepare(raw, out)
    for part in ("query", "gallery"):
        ours = [str(p) for p in list_prepared(out, part)]
        reference = [path for path, _ in ImageFolder(str(out / part)).imgs]
        assert ours == reference
    labels, cams = labels_and_cameras(list_prepared(out, "gallery"))
    assert labels[0] == -1 and 0 in labels and all(1 <= c <= 6 for c in cams)


def test_bad_raw_folders(raw, tmp_path):
    with pytest.raises(ReidQuantError, match="Market-1501 folder not found"):
        check_raw(tmp_path / "absent")
    partial = tmp_path / "partial"
    (partial / "query").mkdir(parents=True)
    with pytest.raises(ReidQuantError, match="missing folder bounding_box_train/"):
        check_raw(partial)
    with pytest.raises(ReidQuantError, match="complete Market-1501 has 12936"):
        check_raw(raw, require_full=True)


def test_unparseable_name_is_named(raw, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(raw, copy)
    (copy / "query" / "Thumbs.db").write_bytes(b"ignored")  # the real release ships these
    (copy / "query" / "person_7.jpg").write_bytes(b"")
    with pytest.raises(ReidQuantError, match=r"query/person_7.jpg: file name does not follow"):
        prepare(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()
