"""Downloads against a local HTTP server on 127.0.0.1 started by the test, and safe extraction."""

import hashlib
import http.server
import threading
import zipfile
from functools import partial

import pytest

from reidquant.errors import ReidQuantError
from reidquant.fetch import download, extract_zip

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves PAYLOAD at /file.bin, honouring Range when asked to; counts requests."""

    honour_range = True
    requests = []

    def do_GET(self):  # noqa: N802 - http.server's name
        RangeHandler.requests.append(self.headers.get("Range"))
        if self.path != "/file.bin":
            self.send_error(404)
            return
        start = 0
        ranged = self.headers.get("Range")
        if ranged and self.honour_range:
            start = int(ranged.split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_with_checksum(server, tmp_path):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    out = download(f"{server}/file.bin", tmp_path / "file.bin", sha256=digest)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()


def test_checksum_mismatch_keeps_nothing(server, tmp_path):
    with pytest.raises(ReidQuantError, match="sha256 mismatch"):
        download(f"{server}/file.bin", tmp_path / "file.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("honour_range", [True, False])
def test_partial_download_resumes_or_restarts(server, tmp_path, honour_range, monkeypatch):
    monkeypatch.setattr(RangeHandler, "honour_range", honour_range)
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    out = download(f"{server}/file.bin", tmp_path / "file.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert out.read_bytes() == PAYLOAD
    assert RangeHandler.requests == ["bytes=1000-"]


def test_http_error_and_no_network(server, tmp_path):
    with pytest.raises(ReidQuantError, match="HTTP 404"):
        download(f"{server}/missing.bin", tmp_path / "x.bin")
    with pytest.raises(ReidQuantError, match=r"cannot download .* put it at"):
        download("http://127.0.0.1:9/nothing.zip", tmp_path / "x.zip", timeout=5)
    assert not (tmp_path / "x.zip").exists()


def make_zip(path, entries):
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in entries.items():
            zipped.writestr(name, data)
    return path


def test_extract_inner_folder(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"Market-1501-v15.09.15/query/x.jpg": b"1",
                                            "Market-1501-v15.09.15/gt_bbox/y.jpg": b"2"})
    out = extract_zip(archive, tmp_path / "Market" / "Market-1501-v15.09.15", inner="Market-1501-v15.09.15")
    assert (out / "query" / "x.jpg").read_bytes() == b"1"
    assert [p.name for p in (tmp_path / "Market").iterdir()] == ["Market-1501-v15.09.15"]


def test_zip_slip_is_refused(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"ok.txt": b"1", "../../escaped.txt": b"2"})
    with pytest.raises(ReidQuantError, match=r"'\.\./\.\./escaped.txt' would be written outside"):
        extract_zip(archive, tmp_path / "out" / "data")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out" / "data").exists()


def test_truncated_zip_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {f"d/{i}.jpg": bytes(5000) for i in range(20)})
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReidQuantError, match="truncated or corrupt zip"):
        extract_zip(archive, tmp_path / "out" / "d", inner="d")
    assert not (tmp_path / "out" / "d").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no staging folder left behind


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_checkpoint_from_pth_and_from_zip(file_server, tmp_path):
    from reidquant.fetch import fetch_checkpoint

    root, url = file_server
    (root / "net_last.pth").write_bytes(b"weights")
    (root / "opts.yaml").write_text("nclasses: 751\n")
    folder = fetch_checkpoint(f"{url}/net_last.pth", tmp_path / "a",
                              sha256=hashlib.sha256(b"weights").hexdigest())
    assert (folder / "net_last.pth").read_bytes() == b"weights" and (folder / "opts.yaml").exists()
    make_zip(root / "ft_net_dense.zip", {"model/ft_net_dense/net_last.pth": b"w2",
                                         "model/ft_net_dense/opts.yaml": b"nclasses: 751\n"})
    folder = fetch_checkpoint(f"{url}/ft_net_dense.zip", tmp_path / "b")
    assert sorted(p.name for p in folder.iterdir()) == ["net_last.pth", "opts.yaml"]
    make_zip(root / "empty.zip", {"readme.txt": b"nothing"})
    with pytest.raises(ReidQuantError, match="no folder with net_last.pth and opts.yaml"):
        fetch_checkpoint(f"{url}/empty.zip", tmp_path / "c")
    assert not (tmp_path / "c" / "net_last.pth").exists()


def test_fetch_command(server, tmp_path):
    from conftest import run_cli

    digest = hashlib.sha256(PAYLOAD).hexdigest()
    result = run_cli("fetch", f"{server}/file.bin", tmp_path / "f.bin", "--sha256", digest)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    result = run_cli("fetch", f"{server}/file.bin", tmp_path / "g.bin", "--sha256", "0" * 64)
    assert result.returncode == 1 and "sha256 mismatch" in result.stderr
    assert not (tmp_path / "g.bin").exists()
