"""The real ``snakemake`` on a tiny configuration, in a copy of the repository."""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from functools import cache

import pytest
import yaml

from conftest import ROOT, TINY, copied, dry_run_jobs, make_project, read_summary, snakemake
from reidquant.table import COLUMNS


@pytest.fixture(scope="module")
def finished(finished_run, tmp_path_factory):
    """This file's tests run snakemake in the finished run and edit it: a copy of their own."""
    return copied(finished_run, tmp_path_factory)


def test_summary_has_contract_columns_and_rows(finished):
    project, result = finished
    header = (project / "results" / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[: len(COLUMNS)] == COLUMNS
    rows = {(r["variant"], r["device"]): r for r in read_summary(project)}
    assert ("fp32", "cpu") in rows and ("int8_seed", "cpu") in rows
    assert not any(device == "cuda" for _, device in rows) or shutil.which("nvidia-smi")
    fp32 = rows[("fp32", "cpu")]
    assert fp32["dataset"] == "synthetic" and fp32["weights"] == "untrained"
    assert float(fp32["speedup"]) == 1.0 and float(fp32["size_ratio"]) == 1.0
    int8 = rows[("int8_seed", "cpu")]
    assert float(int8["size_ratio"]) < 0.35
    assert 0 <= float(int8["mAP"]) <= 1 and 0 < float(int8["cos_mean"]) <= 1.0001
    assert (project / "results" / "fp32" / "cpu" / "features.mat").exists()
    assert float(int8["speedup_lo"]) <= float(int8["speedup"]) <= float(int8["speedup_hi"])
    assert float(int8["mAP_lo"]) <= float(int8["mAP"]) <= float(int8["mAP_hi"])
    assert float(int8["mAP_delta_lo"]) <= float(int8["mAP_delta"]) <= float(int8["mAP_delta_hi"])
    timing = json.loads((project / "results" / "int8_seed" / "cpu" / "timing.json").read_text())
    assert len(timing["round_speedups"]) == TINY["benchmark"]["repeats"]  # timed side by side with fp32
    assert float(int8["speedup"]) == pytest.approx(timing["speedup"], rel=1e-5)  # the CSV keeps 6 digits
    text = (project / "results" / "summary.md").read_text()
    assert text.count("| fp32 | cpu |") == 1
    # What cannot run anywhere is decided while planning; what this machine lacks, by each job.
    assert "- int8_seed / cuda: fbgemm int8 kernels run on CPUs only" in text
    if not shutil.which("nvidia-smi"):
        for variant in ("fp32", "bf16"):
            assert f"- {variant} / cuda: no CUDA device (decided on node {platform.node()}, " in text
    if ("bf16", "cpu") not in rows:
        assert "- bf16 / cpu: this CPU has no AVX512-BF16 or AMX, so bfloat16 would only be emulated (decided " \
               "on node" in text
    assert "EMBEDDED SYNTHETIC" not in result.stderr  # source: synthetic was asked for explicitly
    for plot in ("accuracy_vs_speed", "size", "fidelity", "latency_vs_accuracy"):
        assert (project / "results" / "plots" / f"{plot}.png").stat().st_size > 1000



def test_every_row_has_its_deployment_profile(finished):
    project, _ = finished
    rows = read_summary(project)
    for row in rows:
        for b in (1, 4):
            low, median, high = (float(row[f"latency_speedup_b{b}{end}"]) for end in ("_lo", "", "_hi"))
            assert low <= median <= high, row["variant"]
            # eager fp32 is the tiny config's only fp32 row: the fastest one, its own reference
            assert row[f"fastest_fp32_b{b}"] == row["fastest_fp32"] == "fp32"
            assert float(row[f"latency_speedup_b{b}_vs_fastest_fp32"]) == pytest.approx(median, rel=1e-5)
            assert float(row[f"latency_b{b}_p90_ms"]) >= float(row[f"latency_b{b}_ms"]) > 0
            assert float(row[f"compile_b{b}_s"]) >= 0
        assert float(row["first_embedding_s"]) > float(row["load_s"]) > 0
        assert row["mem_mb"] != "" and row["within_budget"] in ("True", "False")
    fp32 = next(row for row in rows if row["variant"] == "fp32")
    assert float(fp32["latency_speedup_b1"]) == float(fp32["latency_speedup_b4_hi"]) == 1.0
    assert fp32["within_budget"] == "True"
    timing = json.loads((project / "results" / "ov_int8" / "cpu" / "timing.json").read_text())
    assert len(timing["latency"]["1"]["round_speedups"]) == TINY["benchmark"]["latency_rounds"]
    assert timing["latency_runtime_config"]["PERFORMANCE_HINT"] == "LATENCY"
    assert set(timing["phase_s"]) == {"cold_start", "throughput", "latency", "extraction"}
    text = (project / "results" / "summary.md").read_text()
    assert "## What to ship" in text and "- Fastest at batch 1: **" in text and "- Smallest: **" in text


def test_nothing_to_do_after_a_complete_run(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/summary.csv")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["extract"].update(batch_size="eight"), "batch_size"),
    (lambda c: c.update(colour="red"), "colour"),
    (lambda c: c.update(devices=["tpu"]), "tpu"),
    (lambda c: c["dataset"]["synthetic"].update(cameras_per_id=9), "cameras_per_id"),
    (lambda c: c["variants"].update(int4={"type": "int4"}), "int4"),
    (lambda c: c["variants"]["int8_seed"].update(observer="histogram"), "observer"),
    (lambda c: c["input"].update(height=16), "input.height: 16 is less than the minimum of 29"),
    (lambda c: c["extract"].update(ms=[1, 0.001]), "extract.ms: scale 0.001 turns the 64x32 input into 2x1"),
    (lambda c: c["variants"].update(fp32={"type": "half", "dtype": "bfloat16"}),
     "variants.fp32.type: the reference every row is compared against must be type fp32"),
    (lambda c: c["variants"].pop("fp32"), "variants: a variant named fp32 is required"),
    (lambda c: c["variants"]["int8_seed"].pop("type"), "variants.int8_seed: 'type' is a required property"),
    (lambda c: c["variants"].update({"summary.csv": {"type": "fp32"}}),
     "variants.summary.csv: the name collides with the workflow's own results/summary.csv"),
    (lambda c: c["variants"].update(plots={"type": "fp32"}), "variants.plots: the name collides"),
    (lambda c: c["benchmark"].update(latency_batches=[]), "benchmark.latency_batches: [] should be non-empty"),
    (lambda c: c["benchmark"].update(latency_batches=[1, 0]),
     "benchmark.latency_batches.1: 0 is less than the minimum of 1"),
    (lambda c: c["benchmark"].update(latency_batches=[-4]),
     "benchmark.latency_batches.0: -4 is less than the minimum of 1"),
    (lambda c: c.update(select={"min_cos": "high"}), "select.min_cos: 'high' is not of type 'number'"),
    (lambda c: c.update(select={"max_mAP_drop": [1]}), "select.max_mAP_drop: [1] is not of type 'number'"),
    (lambda c: c.update(select={"max_mAP_drop": -1}), "select.max_mAP_drop: -1 is less than the minimum of 0"),
    (lambda c: c.update(select={"min_drop": 1}), "select: Additional properties are not allowed ('min_drop'"),
])
def test_bad_config_names_the_field(tmp_path, edit, message):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    edit(config)
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode == 1
    assert "reidquant: error: config" in result.stderr and message in result.stderr
    assert 'File "' not in result.stdout + result.stderr  # one line, no Python frames


def test_only_unavailable_devices_plan_and_end_in_one_line(tmp_path):
    """On a machine without CUDA, cuda-only devices plan (a cluster's GPU node may have one); the
    jobs record why they cannot run here, and the summary says that no row ran, in one line."""
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a CUDA device")
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config.update(devices=["cuda"], variants={"fp32": {"type": "fp32"}})
    project = make_project(tmp_path, config)
    result = snakemake(project, "results/summary.csv")
    assert result.returncode == 1
    assert ("reidquant: error: no row ran: every extraction job recorded that its node could not run it "
            f"(fp32 / cuda: no CUDA device (decided on node {platform.node()}, ") in result.stderr
    assert not (project / "results" / "summary.csv").exists()


def jobs_that_ran(project) -> dict:
    """Rule -> jobs of the finished project's default target: its table's rows, and the rows
    whose node recorded that it could not run them."""
    rows = read_summary(project)
    recorded = len(list((project / "results").glob("*/*/timing.json")))
    return {"quantize": len(list((project / "results").glob("*/quantize.json"))), "extract_features": recorded,
            "evaluate": recorded, "rows": len(rows)}


def test_market1501_requested_but_absent(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["dataset"]["source"] = "market1501"
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode != 0
    assert "Market/Market-1501-v15.09.15.zip" in result.stdout + result.stderr


def test_auto_source_says_it_uses_the_synthetic_set(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["dataset"]["source"] = "auto"
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EMBEDDED SYNTHETIC" in result.stderr + result.stdout


AGGREGATES = {"summary": 1, "all": 1}


@pytest.mark.parametrize("edit", [
    lambda variants: variants["int8_seed"].update(calibration_images=6),  # one variant changed
    lambda variants: variants.update(fp16_dynamic_seed={"type": "dynamic_fp16"}),  # one variant added
], ids=["changed", "added"])
def test_variant_edit_reruns_only_that_variant(finished, edit):
    project, _ = finished
    config = yaml.safe_load(yaml.safe_dump(TINY))
    edit(config["variants"])
    path = project / "config" / "config.yaml"
    original = path.read_text()
    path.write_text(yaml.safe_dump(config))
    try:
        jobs = dry_run_jobs(project)
    finally:
        path.write_text(original)
    assert jobs == {"quantize": 1, "extract_features": 1, "evaluate": 1, **AGGREGATES}


def test_copied_project_is_up_to_date(finished, tmp_path):
    project, _ = finished
    copy = tmp_path / "elsewhere"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    assert dry_run_jobs(copy) == {}


# What each rule's jobs feed, in the tiny config's job graph (model.weights: untrained).
FEEDS = {"synthetic_dataset": ["prepare_dataset"], "prepare_dataset": ["quantize", "extract_features"],
         "untrained_weights": ["quantize"], "quantize": ["extract_features"], "extract_features": ["evaluate"],
         "evaluate": ["summary"], "summary": ["all"], "all": []}
SCRIPTS = {rule: f"{rule}.py" for rule in FEEDS if rule != "all"}  # each rule runs the script of its name


@cache  # the same answer for every test: the repository's own sources do not change during the run
def library_modules(script):
    from reidquant.codedeps import library_files

    return frozenset(p.relative_to(ROOT).as_posix()
                     for p in library_files(ROOT / "workflow" / "scripts" / script, ROOT / "reidquant"))


def planned_after_editing(project, module):
    """Rule -> jobs a dry run plans once ``module`` is changed; its bytes and mtime are put back.

    A real edit, not a touch: Snakemake skips a newer input whose checksum has not changed.
    """
    path = project / module
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + b"\n# edited\n")
    os.utime(path, (stat.st_atime, time.time() + 3600))  # newer than every output, however old the file
    try:
        return dry_run_jobs(project)
    finally:
        path.write_bytes(original)
        os.utime(path, (stat.st_atime, stat.st_mtime))


def expected_plan(module, jobs_per_rule):
    """The rules whose scripts import ``module``, and everything downstream of them."""
    todo = [rule for rule, script in SCRIPTS.items() if module in library_modules(script)]
    rules = set()
    while todo:
        rule = todo.pop()
        if rule not in rules:
            rules.add(rule)
            todo.extend(FEEDS[rule])
    return {rule: jobs_per_rule[rule] for rule in rules}


@pytest.mark.parametrize("rule", [rule for rule in FEEDS if rule != "all"])
def test_code_change_reruns_exactly_the_jobs_that_run_it(finished, rule):
    project, _ = finished
    jobs_per_rule = {rule: 1 for rule in FEEDS}
    ran = jobs_that_ran(project)
    jobs_per_rule.update(quantize=ran["quantize"], extract_features=ran["extract_features"], evaluate=ran["evaluate"])
    imported = library_modules(SCRIPTS[rule])
    everything = {p.relative_to(ROOT).as_posix() for p in (ROOT / "reidquant").rglob("*.py")}
    users = {m: sum(m in library_modules(script) for script in SCRIPTS.values()) for m in everything}
    # the module this rule imports that the fewest others do; then the most shared module that neither
    # this rule nor any rule upstream of it imports
    edited = min(sorted(imported), key=users.get)
    plan = planned_after_editing(project, edited)
    assert rule in plan and plan == expected_plan(edited, jobs_per_rule), edited
    unrelated = [m for m in sorted(everything - imported) if rule not in expected_plan(m, jobs_per_rule)]
    other = min(unrelated, key=lambda m: -users[m])
    plan = planned_after_editing(project, other)
    assert rule not in plan and plan == expected_plan(other, jobs_per_rule), other


def test_outputs_get_the_users_permissions(finished):
    project, _ = finished
    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for p in (project / "results").rglob("*") if p.is_file() and "logs" not in p.parts]
    files += [p for p in (project / "Market").rglob("*")]
    assert len(files) > 20
    for path in files:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == expected, path


def test_config_overrides_are_typed(finished):
    project, _ = finished
    assert dry_run_jobs(project, "--config", "dataset={source: synthetic, check_counts: false}") == {}
    jobs = dry_run_jobs(project, "--config", "variants={int8_seed: {calibration_images: 6}}")
    assert jobs == {"quantize": 1, "extract_features": 1, "evaluate": 1, **AGGREGATES}
    result = snakemake(project, "-n", "--config", "dataset={check_counts: maybe}")
    assert result.returncode == 1
    assert "config field dataset.check_counts: 'maybe' is not of type 'boolean'" in result.stderr


def test_runs_without_cores(finished):
    """--unlock and cluster submission give no --cores; timed rules must still parse."""
    project, _ = finished
    result = snakemake(project, "--unlock", cores=None)
    assert result.returncode == 0, result.stderr[-2000:]


def test_rules_have_logs_and_lint_is_clean(finished):
    project, _ = finished
    result = snakemake(project, "--lint")
    assert result.returncode == 0
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("profile, plugin, extra", [
    ("slurm", "snakemake_executor_plugin_slurm", []),
    ("kubernetes", "snakemake_executor_plugin_kubernetes",
     ["--default-storage-provider", "fs", "--default-storage-prefix", "remote"]),
])
def test_cluster_profiles_dry_run(tmp_path, profile, plugin, extra):
    pytest.importorskip(plugin)
    if extra:
        pytest.importorskip("snakemake_storage_plugin_fs")
    project = make_project(tmp_path)
    result = snakemake(project, "-n", "--workflow-profile", f"profiles/{profile}", *extra, cores=None)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "extract_features" in result.stdout


def test_conda_envs_are_pinned_to_tested_versions():
    import re
    from importlib.metadata import version

    pins = {}
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        match = re.match(r'\s*"([A-Za-z0-9_.-]+)==([^"]+)"', line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    conda_names = {"matplotlib-base": "matplotlib"}
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        assert spec["channels"] == ["conda-forge", "nodefaults"], env.name
        deps = spec["dependencies"]
        for dep in deps:
            if isinstance(dep, dict):
                for item in dep["pip"]:
                    if item.startswith("--"):
                        continue
                    name, _, pinned = item.partition("==")
                    assert pinned, f"{env.name}: {item} is not pinned"
                    assert pinned.split("+")[0] == pins[name.lower()], f"{env.name}: {item} vs pyproject"
                continue
            name, _, pinned = dep.partition("=")
            assert pinned, f"{env.name}: {dep} is not pinned"
            name = conda_names.get(name, name)
            if name in pins:
                assert pinned == pins[name], f"{env.name}: {dep} vs pyproject {pins[name]}"
                assert pinned == version(name), f"{env.name}: {dep} but tested with {version(name)}"


def test_real_market_zip_is_extracted_and_prepared(tmp_path):
    """A small archive in the real release's format, found at the contract location."""
    import zipfile

    from reidquant.synth import SynthSizes, generate

    project = make_project(tmp_path, {**TINY, "dataset": {"source": "auto", "check_counts": False}})
    sizes = SynthSizes.from_settings(dict(train_ids=3, test_ids=2, images_per_camera=1, cameras_per_id=2,
                                          distractors=1, junk=1, multi_query_per_query=1))
    raw = generate(tmp_path / "release" / "Market-1501-v15.09.15", sizes, progress=False)
    (project / "Market").mkdir()
    with zipfile.ZipFile(project / "Market" / "Market-1501-v15.09.15.zip", "w") as zipped:
        for path in sorted((tmp_path / "release").rglob("*.jpg")):
            zipped.write(path, path.relative_to(tmp_path / "release"))
    assert raw["test_ids"] == 2
    result = snakemake(project, "Market/pytorch")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (project / "Market" / "Market-1501-v15.09.15" / "gt_bbox").is_dir()
    assert len(list((project / "Market" / "pytorch" / "query").rglob("*.jpg"))) == 4
    assert not (project / "Market" / "synthetic").exists()
    dry = snakemake(project, "-n", "results/summary.csv")
    assert "EMBEDDED SYNTHETIC" not in dry.stdout + dry.stderr
    # Once unpacked, the folder is used as it is: the zip may go, nothing is unpacked or downloaded again.
    (project / "Market" / "Market-1501-v15.09.15.zip").unlink()
    assert dry_run_jobs(project, "Market/pytorch") == {}


def test_checkpoint_url_plans_a_download(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["model"]["weights"] = "https://example.org/models/ft_net_dense/net_last.pth"
    jobs = dry_run_jobs(make_project(tmp_path, config))
    assert jobs["download_weights"] == 1 and "train" not in jobs


def test_missing_checkpoint_folder_is_named(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["model"]["weights"] = "model/nowhere"
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode != 0 and "model/nowhere/net_last.pth not found" in result.stdout + result.stderr


def planned_with_checkpoint(tmp_path, folder, files, *args):
    """Snakemake's errors, one per line, planning the tiny config with model.weights ``folder``
    holding ``files`` (name -> text)."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["model"]["weights"] = folder
    project = make_project(tmp_path, config)
    (project / folder).mkdir(parents=True)
    for name, text in files.items():
        (project / folder / name).write_text(text)
    result = snakemake(project, *args)
    assert result.returncode == 1
    return project, [line for line in result.stderr.splitlines() if "reidquant: error" in line]


def test_checkpoint_folder_without_opts_is_named(tmp_path):
    _, lines = planned_with_checkpoint(tmp_path, "model/mine", {"net_last.pth": ""}, "-n")
    assert lines == ["reidquant: error: model.weights: model/mine/opts.yaml not found (a checkpoint folder holds "
                     "net_last.pth and opts.yaml; or give a URL, auto, train or untrained)"]


def test_a_checkpoint_of_another_architecture_stops_before_any_job(tmp_path):
    opts = "nclasses: 751\nuse_dense: false\nuse_swin: true\n"
    project, lines = planned_with_checkpoint(tmp_path, "model/swin", {"net_last.pth": "", "opts.yaml": opts},
                                             "results/summary.csv")
    assert lines == ["reidquant: error: model/swin/opts.yaml: use_swin asks for Swin, which reidquant does not "
                     "build; supported: ft_net_dense (use_dense: true) and ft_net (ResNet-50, no network flag)"]
    assert not (project / "results").exists() and not (project / "Market").exists()


def test_other_weights_rerun_every_row(finished):
    """The same weights under another source label are still another source: every row is
    rebuilt, so the table never carries a label its numbers did not come from."""
    project, _ = finished
    mine = project / "model" / "mine"
    shutil.copytree(project / "results" / "untrained" / "synthetic", mine)
    try:
        jobs = dry_run_jobs(project, "--config", "model={weights: model/mine}")
    finally:
        shutil.rmtree(project / "model")
    ran = jobs_that_ran(project)
    assert jobs == {"quantize": ran["quantize"], "extract_features": ran["extract_features"],
                    "evaluate": ran["evaluate"], **AGGREGATES}


def test_report_bundles_table_and_plots(finished):
    project, _ = finished
    result = snakemake(project, "--report", "results/report.html", "results/summary.csv")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    html = (project / "results" / "report.html").read_text(errors="ignore")
    assert "summary.csv" in html and "summary.md" in html and "accuracy_vs_speed.png" in html


def test_sensitivity_is_a_target_of_its_own(finished, tmp_path):
    """results/sensitivity.md measures the built int8 artifacts; the table's run measures none."""
    project, _ = finished
    copy = tmp_path / "project"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    assert not list((copy / "results").glob("*/sensitivity.csv"))  # the default target ran none
    int8 = "variants={int8: {type: pt2e_int8, calibration_images: 8, compile: false}}"
    jobs = dry_run_jobs(copy, "results/sensitivity.md", "--config", int8)
    assert jobs == {"quantize": 1, "sensitivity": 1, "sensitivity_report": 1}
    result = snakemake(copy, "results/sensitivity.md", "--config", int8)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (copy / "results" / "sensitivity.md").read_text()
    assert "- **int8**: `" in text and (copy / "results" / "plots" / "sensitivity.png").stat().st_size > 10_000
    rows = (copy / "results" / "int8" / "sensitivity.csv").read_text().splitlines()
    assert rows[0] == "index,layer,reference_name,part,op,sqnr_db,cos_mean_gain" and len(rows) == 1 + 121
    # summary.md points to it once it exists (the table's own int8 rows: no extraction of this one).
    result = snakemake(copy, "results/summary.csv", "--forcerun", "summary")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[results/sensitivity.md](sensitivity.md)" in (copy / "results" / "summary.md").read_text()


def test_float_modules_auto_is_built_from_its_unranked_builds_sensitivity(finished):
    project, _ = finished
    auto = ("variants={int8_auto: {type: pt2e_int8, float_modules: auto, "
            "accuracy_control: {metric: cos_mean, max_drop: 0.001}}}")
    result = snakemake(project, "-n", "results/summary.csv", "--config", auto)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "results/int8_auto.unranked/sensitivity.csv" in result.stdout
    jobs = dry_run_jobs(project, "--config", auto)
    assert jobs == {"quantize": 2, "sensitivity": 1, "extract_features": 1, "evaluate": 1, **AGGREGATES}


def test_variant_names_of_the_workflows_own_builds_are_refused(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["variants"]["int8.unranked"] = {"type": "pt2e_int8"}
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode == 1
    assert "config field variants.int8.unranked: names ending in .unranked are the workflow's own" in result.stderr
