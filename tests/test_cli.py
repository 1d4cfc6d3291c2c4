"""``python -m reidquant`` on bad input: one line naming what and where, a non-zero exit, no traceback."""

import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, market_like, record_build, run_cli, synthetic_prepared, write_mat
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
             out=root / "fp32", height=64, width=32, info_out=root / "fp32.quantize.json")
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


def one_gallery_image(folder):
    """A prepared folder with one gallery image to time on: what the test gets wrong is the artifact."""
    from PIL import Image

    (folder / "gallery" / "0001").mkdir(parents=True)
    Image.new("RGB", (32, 64)).save(folder / "gallery" / "0001" / "0001_c1s1_000001_00.jpg")


@pytest.mark.parametrize("spec, message", [
    ('{"type": "eager_int8"}', "holds a fp32 variant, but the spec says type eager_int8"),
    ('{"type": "pt2e_int8"}', "holds model.pt but no model.pt2, the artifact of type pt2e_int8"),
    ('{"type": "openvino", "precision": "int8"}', "holds model.pt but no model.xml, the artifact of type openvino"),
])
def test_artifact_of_another_type(fp32_artifact, tmp_path, spec, message):
    one_gallery_image(tmp_path)
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


class RunsCode:
    """Unpickling this touches a marker file: what a crafted checkpoint would do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickles_are_refused_and_nothing_runs(fp32_artifact, tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    one_gallery_image(tmp_path)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    # The build's record is plain JSON: a crafted folder carries one as easily as a real build.
    shutil.copy2(fp32_artifact / "build.json", artifact / "build.json")
    torch.save({"type": "fp32", "opts": {}, "state_dict": {}, "payload": RunsCode(marker)}, artifact / "model.pt")
    record_build(artifact)
    result = run_cli("extract", "--artifact", artifact, "--spec", '{"type": "fp32"}', "--data", tmp_path,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--height", 64, "--width", 32)
    assert_one_line_error(result, "model.pt: refused: it holds Python objects (io.open)")
    # a whole pickled module: one clean line too (torch's own message has ANSI codes and spans lines)
    torch.save(torch.nn.Linear(2, 2), artifact / "model.pt")
    record_build(artifact)
    result = run_cli("extract", "--artifact", artifact, "--spec", '{"type": "fp32"}', "--data", tmp_path,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--height", 64, "--width", 32)
    assert_one_line_error(result, "refused: it holds Python objects (torch.nn.modules.linear.Linear)")
    assert "\x1b" not in result.stderr
    # the training resume file, read before any training starts
    out = tmp_path / "ckpt"
    out.mkdir()
    torch.save({"fingerprint": "x", "model": RunsCode(marker)}, out / "resume.pt")
    data = fp32_artifact.parent / "data"
    from reidquant.market import prepare
    from reidquant.synth import SynthSizes, generate

    generate(data / "raw", SynthSizes.from_settings(dict(train_ids=2, test_ids=2, images_per_camera=1,
                                                         cameras_per_id=2, distractors=1, junk=1,
                                                         multi_query_per_query=0)), progress=False)
    prepare(data / "raw", data / "pytorch")
    result = run_cli("train", "--data", data / "pytorch", "--out", out, "--height", 64, "--width", 32,
                     "--settings", '{"epochs": 1, "workers": 0, "low_res_epochs": 0}')
    assert_one_line_error(result, "resume.pt: refused: it holds Python objects (io.open)")
    assert not marker.exists() and not (out / "net_last.pth").exists()


def test_crafted_export_archive_is_refused(tmp_path):
    import zipfile

    from reidquant.errors import ReidQuantError
    from reidquant.safeload import check_export_archive

    path = tmp_path / "model.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/data/weights/model_weights_config.json",
                         '{"config": {"w": {"path_name": "weight_0", "use_pickle": true}}}')
    with pytest.raises(ReidQuantError, match="refused: w is stored as a pickled object"):
        check_export_archive(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/data/weights/model.pt", b"legacy pickled weights")
    with pytest.raises(ReidQuantError, match="entry model/data/weights/model.pt is not one torch.export.save"):
        check_export_archive(path)


@pytest.mark.parametrize("entry", ["model/data/aotinductor/model/../../../../elsewhere/zz.so",
                                   "model/data/aotinductor/model//zz.so", "/model/data/aotinductor/model/zz.so",
                                   "model\\data\\aotinductor\\model\\zz.so"])
def test_an_archive_entry_that_could_reach_other_files_is_refused(tmp_path, entry):
    import zipfile

    from reidquant.errors import ReidQuantError
    from reidquant.safeload import check_compiled_package, check_export_archive, sha256_of

    path = tmp_path / "model_compiled.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr(entry, b"\x7fELF")
    for check in (lambda: check_compiled_package(path, sha256_of(path), trust_compiled=True),
                  lambda: check_export_archive(path)):
        with pytest.raises(ReidQuantError, match=r"refused: entry .* is not a plain path inside the archive's one "
                                                 r"folder"):
            check()


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "s0.__class__", "lambda: 0", "exec('0')", "Symbol('s0'); import os",
    "getattr(s0, 'x')", "s0[0]", "Integer(1)._sympy_",
])
def test_a_symbolic_size_that_is_python_is_refused(text):
    from reidquant.errors import ReidQuantError
    from reidquant.safeload import check_program_json

    with pytest.raises(ReidQuantError, match="is not a symbolic size, and reading it would run it as Python"):
        check_program_json({"graph_module": {"graph": {"sym_int_values": {"s0": {"as_expr": {"expr_str": text}}}}}},
                           "model.pt2:model/models/model.json")


@pytest.mark.parametrize("text", ["s77", "2*s77", "Max(1, s0)", "FloorDiv(s0 + 1, 2)", "Eq(Mod(s0, 2), 0)",
                                  "s0*s1 - 3", "-s0 + 7"])
def test_the_symbolic_sizes_torch_writes_are_read(text):
    from reidquant.safeload import check_program_json

    check_program_json({"range_constraints": {"s0": {"expr_str": text}}, "guards_code": []}, "model.json")


@pytest.mark.parametrize("text, message", [
    ("{bad", "r.json: not a readable JSON record (Expecting property name"),
    ("[1, 2]", "r.json: holds a JSON list, not the object the job writes"),
    ('{"type": "fp32"}', "r.json: has no cpu_model, cpu_isa; it was not written by this version's job"),
])
def test_a_damaged_record_is_one_line_naming_it(tmp_path, text, message):
    from reidquant.errors import ReidQuantError
    from reidquant.jsonio import read_json

    (tmp_path / "r.json").write_text(text)
    with pytest.raises(ReidQuantError) as error:
        read_json(tmp_path / "r.json", required=("type", "cpu_model", "cpu_isa"))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_evaluate_small_bad_inputs_name_the_file(tmp_path, rng):
    assert_one_line_error(run_cli("evaluate", tmp_path), f"{tmp_path}: is a folder, not a features .mat file")
    strings = np.array([f"{i:04d}" for i in range(60)])
    result = run_cli("evaluate", write_mat(tmp_path / "s.mat", market_like(rng), query_f=strings))
    assert_one_line_error(result, "s.mat: query_f must hold numbers")
    qf, ql, qc, gf, gl, gc = market_like(rng)
    nobody = write_mat(tmp_path / "n.mat", (qf, ql + 1000, qc, gf, gl, gc))
    assert_one_line_error(run_cli("evaluate", nobody), "n.mat: no query has a true match in the gallery")


def test_extract_prints_a_timing_without_per_call_lists():
    from reidquant.cli import without_lists

    timing = {"speedup": 2.0, "batch_s": [1.0], "latency": {"1": {"median_ms": 3.0, "call_s": [0.003]}}}
    assert without_lists(timing) == {"speedup": 2.0, "latency": {"1": {"median_ms": 3.0}}}


def test_an_extraction_on_another_cpu_kind_warns_and_records_both(fp32_artifact, tmp_path):
    import json

    from reidquant.devices import cpu_isa

    moved = tmp_path / "built_elsewhere"
    shutil.copytree(fp32_artifact, moved)
    record = json.loads((moved / "build.json").read_text())
    other = "avx2" if cpu_isa() != "avx2" else "amx"
    record.update(cpu_isa=other, cpu_model="another CPU")
    (moved / "build.json").write_text(json.dumps(record))
    record_build(moved)
    data = synthetic_prepared(tmp_path, train_ids=2, test_ids=2, images_per_camera=1, cameras_per_id=2,
                              distractors=0, junk=0, multi_query_per_query=0)
    result = run_cli("extract", "--artifact", moved, "--spec", '{"type": "fp32"}', "--data", data,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--height", 64, "--width", 32,
                     "--latency-batches", 1, "--latency-rounds", 1)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: variant built_elsewhere was built on a CPU with {other} int8 instructions (another "
                        f"CPU) and runs on one with {cpu_isa()} ({json.loads((tmp_path / 't.json').read_text())['cpu_model']}): "
                        "its saturation guard was chosen for the other"]
    timing = json.loads((tmp_path / "t.json").read_text())
    assert (timing["build_cpu_isa"], timing["cpu_isa"]) == (other, cpu_isa())


def test_a_spec_naming_another_guard_than_the_build_used_is_refused(fp32_artifact, tmp_path):
    import json

    moved = tmp_path / "guarded"
    shutil.copytree(fp32_artifact, moved)
    record = json.loads((moved / "build.json").read_text())
    record.update(type="onnxruntime", saturation_guard={"option": "reduce_range", "setting": "auto", "used": True,
                                                        "cpu_isa": "avx2"})
    (moved / "build.json").write_text(json.dumps(record))
    (moved / "model.onnx").write_bytes(b"")
    record_build(moved)
    one_gallery_image(tmp_path)
    result = run_cli("extract", "--artifact", moved, "--spec",
                     '{"type": "onnxruntime", "precision": "int8", "reduce_range": false}', "--data", tmp_path,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json")
    assert_one_line_error(result, "build.json: built with reduce_range True, but the spec says False (build it again")
    assert not (tmp_path / "f.mat").exists()
