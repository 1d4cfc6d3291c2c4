import pytest
import torch
from PIL import Image

from reidquant.errors import run_for_user, user_message
from reidquant.data import loader, open_image
from reidquant.errors import ReidQuantError


def jpeg(path, size=(64, 128)):
    Image.new("RGB", size, (200, 30, 30)).save(path, quality=90)
    return path


def test_truncated_jpeg_is_named(tmp_path):
    path = jpeg(tmp_path / "0001_c1s1_000001_01.jpg")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ReidQuantError, match=r"0001_c1s1_000001_01.jpg: corrupt or truncated image"):
        open_image(path)


def test_not_an_image_is_named(tmp_path):
    path = tmp_path / "0001_c1s1_000001_01.jpg"
    path.write_text("hello")
    with pytest.raises(ReidQuantError, match="corrupt or truncated"):
        open_image(path)


def test_worker_errors_reach_the_user_as_one_line(tmp_path, capsys):
    good = jpeg(tmp_path / "a.jpg")
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff")

    def extract():
        for _ in loader([good, bad], 64, 32, batch_size=1, workers=1):
            pass

    with pytest.raises(SystemExit) as stop:
        run_for_user(extract)
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "b.jpg: corrupt or truncated image" in err


def test_user_message_of_plain_error():
    assert user_message(ReidQuantError("x.mat: missing key 'query_f'")) == "x.mat: missing key 'query_f'"


def test_loader_keeps_file_order(tmp_path):
    paths = [jpeg(tmp_path / f"{i}.jpg", size=(64 + i, 128)) for i in range(5)]
    batches = [b for b, _ in loader(paths, 32, 16, batch_size=2, workers=0)]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert torch.cat(batches).shape == (5, 3, 32, 16)
