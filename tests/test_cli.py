"""``python -m reidquant`` on bad input: one line naming what and where, a non-zero exit, no traceback."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, market_like, run_cli, write_mat
from reidquant.model import save_untrained
from reidquant.pipeline import quantize
from reidquant.variants import complete


def assert_one_line_error(result, text, status=1):
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reidquant: error: "), result.stderr
    assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def fp32_artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_untrained(root / "weights", nclasses=4)
    quantize(name="fp32", spec=complete({"type": "fp32"}), weights=root / "weights", data_root=root / "unused",
             out=root / "fp32", height=64, width=32)
    return root / "fp32"


@pytest.mark.parametrize("spec, message", [
    ('{"type": "fp32"', "--spec: not valid JSON"),
    ('{"calibration_images": 8}', "--spec: 'type' is a required property"),
    ('{"type": "half"}', "--spec: 'dtype' is a required property"),
    ('{"type": "pt2e_int8", "calibration_images": 0}', "--spec field calibration_images: 0 is less than"),
    ('["fp32"]', "--spec: expected a JSON object"),
])
def test_bad_spec(tmp_path, spec, message):
    result = run_cli("quantize", "--name", "x", "--spec", spec, "--weights", tmp_path, "--data", tmp_path,
                     "--out", tmp_path / "x.pt")
    assert_one_line_error(result, message)


@pytest.mark.parametrize("spec, message", [
    ('{"type": "eager_int8"}', "holds a fp32 variant, but the spec says type eager_int8"),
    ('{"type": "pt2e_int8"}', "holds model.pt but no model.pt2, the artifact of type pt2e_int8"),
    ('{"type": "openvino", "precision": "int8"}', "holds model.pt but no model.xml, the artifact of type openvino"),
])
def test_artifact_of_another_type(fp32_artifact, tmp_path, spec, message):
    result = run_cli("extract", "--artifact", fp32_artifact, "--spec", spec, "--data", tmp_path,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--height", 64, "--width", 32)
    assert_one_line_error(result, message)
    assert not (tmp_path / "f.mat").exists()


def test_missing_artifact_and_bad_sizes(tmp_path):
    common = ["--spec", '{"type": "fp32"}', "--data", tmp_path, "--out", tmp_path / "f.mat",
              "--timing", tmp_path / "t.json"]
    result = run_cli("extract", "--artifact", tmp_path / "absent.pt", *common)
    assert_one_line_error(result, "absent.pt: variant artifact not found")
    result = run_cli("extract", "--artifact", tmp_path / "absent.pt", *common, "--ms", "1", "0.01")
    assert_one_line_error(result, "ms: scale 0.01 turns the 256x128 input into 25x12")
    result = run_cli("extract", "--artifact", tmp_path / "a.pt", *common, "--batch-size", "0")
    assert result.returncode == 2 and "--batch-size: must be at least 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_train_settings(tmp_path):
    for settings, message in (('{"epochs": 0}', "--settings field epochs: 0 is less than the minimum of 1"),
                              ("{epochs: 3}", "--settings: not valid JSON")):
        result = run_cli("train", "--data", tmp_path, "--out", tmp_path / "ckpt", "--settings", settings)
        assert_one_line_error(result, message)
        assert not (tmp_path / "ckpt").exists()


def test_evaluate_bad_features(tmp_path, rng):
    labels = np.array([f"person{i}" for i in range(60)])
    result = run_cli("evaluate", write_mat(tmp_path / "s.mat", market_like(rng), query_label=labels))
    assert_one_line_error(result, "s.mat: query_label must hold integers")
    zeros = np.zeros((400, 32), np.float32)
    result = run_cli("evaluate", write_mat(tmp_path / "z.mat", market_like(rng), gallery_f=zeros), "--json", tmp_path / "m.json")
    assert_one_line_error(result, "z.mat: gallery_f row 0 is all zeros")
    assert not (tmp_path / "m.json").exists()


def test_evaluate_json_that_cannot_be_written(tmp_path, rng):
    (tmp_path / "file").write_text("")
    result = run_cli("evaluate", write_mat(tmp_path / "f.mat", market_like(rng)), "--json", tmp_path / "file" / "m.json")
    assert_one_line_error(result, "file/m.json: cannot write here")


def test_ctrl_c_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "synthetic"
    # The child gets Ctrl-C's default handling even where this test runs in the background of
    # a non-interactive shell, which starts its commands with SIGINT ignored.
    process = subprocess.Popen([sys.executable, "-m", "reidquant", "synth", "--out", str(out), "--train-ids", "500"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    # Wait until the first training images are written: the 500 identities' worth still to
    # come keep it busy well past the signal (the query images come last, just before it ends).
    while not list(tmp_path.glob(".synthetic.*/bounding_box_train/*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "reidquant: interrupted"
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_ctrl_c_in_a_rule_script_is_one_line_even_while_importing():
    code = "import reidquant.rulelog\nimport json\nraise {}"
    for error, quiet in (("KeyboardInterrupt", True), ("ValueError('a bug')", False)):
        result = subprocess.run([sys.executable, "-c", code.format(error)], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode != 0
        if quiet:
            assert result.stderr.strip() == "reidquant: interrupted"
        else:  # anything else is a bug and keeps its traceback
            assert "Traceback" in result.stderr and "a bug" in result.stderr
