"""reidquant as users install it: the wheel, in a fresh virtual environment, outside the clone.

The environment takes its dependencies from the one running the tests (a fresh download of
PyTorch would take minutes): a ``.pth`` file names the running environment's site-packages,
which works whether the tests run in a virtual environment or not (``--system-site-packages``
would see the base interpreter's, not a virtual environment's). The package itself comes from
the wheel alone, which is checked.
"""

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A virtual environment with the wheel built from this checkout installed; its python."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(root / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("reidquant-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    inner = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    running = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(inner) / "running_environment.pth").write_text("".join(f"{path}\n" for path in running))
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return wheel, python, root / "work"


def test_the_wheel_holds_every_module_and_the_schema(installed):
    wheel, _, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith("reidquant/")}
    in_checkout = {path.relative_to(ROOT).as_posix() for path in (ROOT / "reidquant").rglob("*")
                   if path.is_file() and path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts}
    assert in_checkout <= packaged, sorted(in_checkout - packaged)
    assert "reidquant/config.schema.yaml" in packaged and "reidquant/architectures/ft_net.py" in packaged


def cli(python, work, *args):
    result = subprocess.run([str(python), "-m", "reidquant", *map(str, args)], cwd=work, capture_output=True,
                            text=True)
    assert result.returncode == 0, f"{args[0]}: {result.stderr[-3000:]}"
    return result.stdout


def test_the_cli_chain_runs_from_the_installed_wheel_outside_the_clone(installed):
    _, python, work = installed
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import reidquant; print(reidquant.__file__)"], cwd=work,
                           capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(python.parents[1]), where  # the wheel's copy, not the checkout's
    sizes = ["--height", 64, "--width", 32]
    cli(python, work, "synth", "--out", "raw", "--train-ids", 3, "--test-ids", 2, "--images-per-camera", 2,
        "--cameras-per-id", 2, "--distractors", 1, "--junk", 1, "--multi-query", 0)
    cli(python, work, "prepare", "raw", "prepared")
    cli(python, work, "train", "--data", "prepared", "--out", "weights", "--settings",
        '{"epochs": 1, "batch_size": 4, "workers": 0}', *sizes)
    int8 = '{"type": "onnxruntime", "precision": "int8", "calibration_images": 4}'
    for name, spec in (("fp32", '{"type": "fp32"}'), ("ort_int8", int8)):
        cli(python, work, "quantize", "--name", name, "--spec", spec, "--weights", "weights", "--data", "prepared",
            "--out", name, *sizes)
    timing = ["--batch-size", 4, "--workers", 0, "--latency-batches", 1, "--latency-rounds", 1, *sizes]
    cli(python, work, "extract", "--artifact", "fp32", "--spec", '{"type": "fp32"}', "--data", "prepared",
        "--out", "fp32.mat", "--timing", "fp32.json", *timing)
    cli(python, work, "extract", "--artifact", "ort_int8", "--spec", int8, "--data", "prepared",
        "--reference-artifact", "fp32", "--out", "int8.mat", "--timing", "int8.json", *timing)
    cli(python, work, "evaluate", "int8.mat", "--reference", "fp32.mat", "--json", "metrics.json")
    metrics = json.loads((work / "metrics.json").read_text())
    assert 0 <= metrics["mAP"] <= 1 and metrics["cos_mean"] > 0.9
    assert json.loads((work / "int8.json").read_text())["cpu_isa"]
