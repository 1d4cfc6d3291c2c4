"""Code dependencies are the modules a script really imports, found by walking the imports."""

from pathlib import Path

from conftest import ROOT
from reidquant.codedeps import library_files


def write(root: Path, files: dict) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_walk_follows_every_kind_of_import(tmp_path):
    write(tmp_path, {
        "reidquant/__init__.py": "",
        "reidquant/top.py": "import reidquant.plain\nfrom reidquant import named\n"
                            "def later():\n    from reidquant.lazy import thing\n",
        "reidquant/plain.py": "import os\n",
        "reidquant/named.py": "from .relative import x\n",
        "reidquant/relative.py": "x = 1\n",
        "reidquant/lazy.py": "thing = 2\nimport numpy\n",
        "reidquant/sub/__init__.py": "",
        "reidquant/sub/deep.py": "from ..plain import os\n",
        "reidquant/unused.py": "import reidquant.top\n",
        "script.py": "import json\nfrom reidquant.top import later\nimport reidquant.sub.deep\n",
    })
    found = library_files(tmp_path / "script.py", tmp_path / "reidquant")
    assert [p.relative_to(tmp_path / "reidquant").as_posix() for p in found] == [
        "__init__.py", "lazy.py", "named.py", "plain.py", "relative.py", "sub/__init__.py", "sub/deep.py",
        "top.py"]


def test_workflow_scripts_depend_on_what_they_run():
    def deps(script):
        return {p.relative_to(ROOT / "reidquant").with_suffix("").as_posix()
                for p in library_files(ROOT / "workflow" / "scripts" / f"{script}.py", ROOT / "reidquant")}

    types = {f"variants/{name}" for name in ("fp32", "half", "pt2e_int8", "openvino", "onnxruntime")}
    assert {"pipeline", "variants/__init__", "features", "data", "market", "devices", "model"} | types \
        <= deps("quantize")
    assert {"pipeline", "variants/__init__", "features", "model", "devices", "market", "matfile"} | types \
        <= deps("extract_features")
    assert {"synth", "market"} <= deps("synthetic_dataset")
    # evaluating a .mat file runs no model code, so model changes never rerun it
    assert deps("evaluate").isdisjoint({"model", "variants/__init__", "train", "cli", "pipeline", "features"})
    assert "losses" not in set().union(*(deps(s.stem) for s in (ROOT / "workflow" / "scripts").glob("*.py")))
