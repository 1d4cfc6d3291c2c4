"""The comparison table: side-by-side speedups, bootstrap intervals, paired deltas, rows not run."""

import numpy as np
import pandas as pd
import pytest
import torch

import reidquant.features as features
from reidquant.errors import ReidQuantError
from reidquant.features import Runner, model_throughput
from reidquant.jsonio import write_json
from reidquant.stats import bootstrap_interval
from reidquant.markdown import markdown, what_to_ship
from reidquant.table import COLUMNS, EXTRA, columns, rows


def test_bootstrap_interval_is_seeded_and_covers_the_mean(rng):
    values = rng.random(500)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and high - low < 0.1
    assert bootstrap_interval(values) == (low, high)
    # a paired difference of correlated per-query values is far narrower than the values' own
    other = values + rng.normal(0, 0.01, 500)
    paired = bootstrap_interval(other - values)
    assert paired[1] - paired[0] < (high - low) / 10
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_reference_is_timed_in_alternating_rounds(monkeypatch):
    clock, calls = [0.0], []

    def runner_taking(seconds, name):
        def forward(x):
            calls.append(name)
            clock[0] += seconds
            return x.flatten(1)
        return Runner(forward)

    monkeypatch.setattr(features.time, "perf_counter", lambda: clock[0])
    timing = model_throughput(runner_taking(1.0, "variant"), torch.zeros(4, 3, 2, 2), warmup=2, repeats=4,
                              reference=runner_taking(3.0, "fp32"))
    assert calls[-8:] == ["variant", "fp32", "fp32", "variant", "variant", "fp32", "fp32", "variant"]
    assert timing["speedup"] == timing["speedup_lo"] == timing["speedup_hi"] == 3.0
    assert timing["round_speedups"] == [3.0] * 4 and timing["model_img_per_s"] == 4.0
    assert timing["reference_img_per_s"] == pytest.approx(4 / 3)
    alone = model_throughput(runner_taking(1.0, "variant"), torch.zeros(4, 3, 2, 2), warmup=2, repeats=3)
    assert "speedup" not in alone


def test_rotating_rounds_rotate_who_goes_first():
    calls = []
    runners = {name: Runner(lambda x, name=name: calls.append(name) or x.flatten(1)) for name in "abc"}
    times = features.rotating_rounds(runners, torch.zeros(1, 3, 2, 2), rounds=3)
    assert calls == list("abcbcacab") and {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}


def write_job(root, variant, ap, rank1, speedup=None, num_query=None, weights="trained", latency_speedup=None,
              cos_min=0.9, size_bytes=None, precision=None, cpu_isa="amx", rounds=5):
    folder = root / variant
    write_json(folder / "quantize.json", {"type": "fp32" if variant == "fp32" else "pt2e_int8",
                                          "size_bytes": size_bytes or (1000 if variant == "fp32" else 250),
                                          "quantize_s": 1.0,
                                          "weights": weights, "dataset": "synthetic", "arch": "ft_net"})
    timing = {"precision": precision or variant, "runtime": "torch", "model_img_per_s": 10.0, "extract_img_per_s": 5.0,
              "device_name": "cpu", "cpu_model": "a CPU", "cpu_isa": cpu_isa, "threads": 2, "torch": "x", "dataset": "synthetic", "batch_size": 32,
              "compile_s": 0.5, "first_embedding_s": 2.0, "load_s": 0.5, "mem_mb": 40.0, "batch_s": [0.1] * rounds,
              "latency": {str(b): {"median_ms": 10.0 * b / (latency_speedup or 1), "p90_ms": 12.0 * b,
                                   "call_s": [0.01] * rounds,
                                   "compile_s": 0.0 if b > 1 else 1.5,
                                   **({"speedup": latency_speedup, "speedup_lo": latency_speedup - 0.1,
                                       "speedup_hi": latency_speedup + 0.1,
                                       "round_speedups": [latency_speedup - 0.1, latency_speedup,
                                                          latency_speedup + 0.1]} if latency_speedup else {})}
                          for b in (1, 8)}}
    if speedup:
        timing.update(speedup=speedup, speedup_lo=speedup - 0.5, speedup_hi=speedup + 0.5,
                      round_speedups=[speedup - 0.5, speedup, speedup + 0.5])
    write_json(folder / "timing.json", timing)
    metrics = {"rank1": float(np.mean(rank1)), "rank5": 1.0, "rank10": 1.0, "mAP": float(np.mean(ap)),
               "mAP_noninterp": 0.5, "mINP": 0.5, "num_query": num_query or len(ap), "num_valid_query": len(ap),
               "cos_mean": 0.99, "cos_min": cos_min, "top1_agreement": 0.9, "top10_overlap": 0.9,
               "per_query": {"ap": list(map(float, ap)), "rank1": list(map(int, rank1))}}
    write_json(folder / "metrics.json", metrics)
    return folder


def test_rows_carry_intervals_and_paired_deltas(tmp_path, rng):
    ap = rng.random(300)
    rank1 = (ap > 0.3).astype(int)
    worse = np.clip(ap - 0.05 + rng.normal(0, 0.005, 300), 0, 1)  # a small, consistent loss
    folders = [write_job(tmp_path, "fp32", ap, rank1, num_query=310),
               write_job(tmp_path, "int8", worse, rank1, speedup=6.0, num_query=310, latency_speedup=4.0)]
    jobs = [("fp32", "cpu"), ("int8", "cpu")]
    table = rows(jobs, *([f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")),
                 "synthetic", "trained")
    assert list(table.columns) == columns([1, 8], [1, 8, 32])
    assert list(table.columns)[:len(COLUMNS)] == COLUMNS and set(EXTRA) < set(table.columns)
    fp32, int8 = table.iloc[0], table.iloc[1]
    assert (fp32["speedup"], fp32["speedup_lo"], fp32["size_ratio"]) == (1.0, 1.0, 1.0)
    assert (int8["speedup"], int8["speedup_lo"], int8["speedup_hi"], int8["size_ratio"]) == (6.0, 5.5, 6.5, 0.25)
    assert int8["mAP_lo"] < int8["mAP"] < int8["mAP_hi"]
    assert int8["mAP_delta"] == pytest.approx((worse.mean() - ap.mean()) * 100)
    assert int8["mAP_delta_lo"] < int8["mAP_delta"] < int8["mAP_delta_hi"] < 0  # paired: clearly a loss
    assert (int8["mAP_hi"] - int8["mAP_lo"]) * 100 > 5 * (int8["mAP_delta_hi"] - int8["mAP_delta_lo"])
    assert int8["rank1_delta"] == int8["rank1_delta_lo"] == int8["rank1_delta_hi"] == 0.0
    text = markdown(table, [("bf16", "cpu", "this CPU has no AVX512-BF16 or AMX"),
                            ("*", "cuda", "no CUDA device on this machine")])
    assert "| int8 | cpu |" in text and "6.00 [5.50, 6.50]" in text
    int8_line = next(line for line in text.splitlines() if line.startswith("| int8 |"))
    assert int8_line.count(" *") == 1  # the mAP loss is marked, the zero rank-1 change is not
    assert "- bf16 / cpu: this CPU has no AVX512-BF16 or AMX" in text and "- * / cuda: no CUDA device" in text
    assert "10 of 310 queries have no true match" in text
    assert text.startswith("dataset: synthetic, weights: trained, arch: ft_net, ") and set(table["arch"]) == {"ft_net"}


def test_a_job_its_node_could_not_run_is_listed_not_tabled(tmp_path, rng):
    from types import SimpleNamespace

    from reidquant.summary import report

    ap = rng.random(50)
    folders = [write_job(tmp_path, "fp32", ap, (ap > 0.3).astype(int))]
    record = {"reason": "no CUDA device", "node": "gpu-node-7", "device": "cuda", "cpu_model": "a CPU",
              "cpu_isa": "avx2"}
    not_run = write_job(tmp_path, "fp32_cuda", ap, (ap > 0.3).astype(int))
    write_json(not_run / "timing.json", {"not_run": record, "dataset": "synthetic"})
    write_json(not_run / "metrics.json", {"not_run": record})
    jobs = [("fp32", "cpu"), ("fp32", "cuda")]
    paths = [[f / name for f in (*folders, not_run)] for name in ("quantize.json", "timing.json", "metrics.json")]
    outputs = SimpleNamespace(csv=tmp_path / "s.csv", markdown=tmp_path / "s.md",
                              **{k: tmp_path / f"{k}.png" for k in ("accuracy", "size", "fidelity", "latency")})
    table = report(jobs, [("int8", "cuda", "x86 Inductor int8 kernels (oneDNN) run on CPUs only")], *paths,
                   "synthetic", "trained", outputs)
    assert list(zip(table["variant"], table["device"])) == [("fp32", "cpu")]
    text = (tmp_path / "s.md").read_text()
    assert "- int8 / cuda: x86 Inductor int8 kernels (oneDNN) run on CPUs only" in text
    assert "- fp32 / cuda: no CUDA device (decided on node gpu-node-7, a CPU, int8 instructions avx2)" in text
    # Every job unable to run: one line saying so, not an empty table.
    with pytest.raises(ReidQuantError, match=r"^no row ran: every extraction job recorded that its node could not "
                                             r"run it \(fp32 / cuda: no CUDA device \(decided on node gpu-node-7"):
        rows([("fp32", "cuda")], *([p[1]] for p in paths), "synthetic", "trained")


def test_rows_of_different_images_are_refused(tmp_path, rng):
    from reidquant.errors import ReidQuantError

    folders = [write_job(tmp_path, "fp32", rng.random(30), np.ones(30)),
               write_job(tmp_path, "int8", rng.random(29), np.ones(29), speedup=2.0, latency_speedup=2.0)]
    with pytest.raises(ReidQuantError, match="29 valid queries but .* has 30"):
        rows([("fp32", "cpu"), ("int8", "cpu")],
             *([f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")),
             "synthetic", "trained")


def test_a_row_made_from_other_weights_is_refused(tmp_path, rng):
    from reidquant.errors import ReidQuantError

    folders = [write_job(tmp_path, "fp32", rng.random(30), np.ones(30)),
               write_job(tmp_path, "int8", rng.random(30), np.ones(30), speedup=2.0, weights="model/old",
                         latency_speedup=2.0)]
    paths = [[f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")]
    with pytest.raises(ReidQuantError, match=r"int8/quantize.json: made from weights 'model/old', but this "
                                             r"run's weights is 'trained'"):
        rows([("fp32", "cpu"), ("int8", "cpu")], *paths, "synthetic", "trained")
    with pytest.raises(ReidQuantError, match=r"fp32/quantize.json: made from dataset 'synthetic', but this "
                                             r"run's dataset is 'market1501'"):
        rows([("fp32", "cpu"), ("int8", "cpu")], *paths, "market1501", "trained")


def extraction_records(spec):
    """A build's record and its extraction's, as the jobs write them on this machine."""
    from reidquant.devices import cpu_identity, cpu_isa, cpu_model
    from reidquant.variants import labels

    files = {"model.pt": "ab" * 32}
    build = {"type": spec["type"], "cpu_model": cpu_model(), "cpu_isa": cpu_isa(), "files_sha256": files}
    extraction = {"files_sha256": files, "cpu_identity": cpu_identity(), "cpu_model": cpu_model(),
                  "cpu_isa": cpu_isa(), "device_name": cpu_model(), "build_cpu_model": cpu_model(),
                  "build_cpu_isa": cpu_isa(), "saturation_guard": None, **labels(spec)}
    return extraction, build


@pytest.mark.parametrize("edit, message", [
    (lambda t, q: t.update(precision="fp16 (tampered)"), "t.json: precision 'fp16 (tampered)' is not what its spec, "
                                                         "its build (q.json) and its recorded CPU give ('int8 eager"),
    (lambda t, q: t.update(runtime="tensorrt"), "t.json: runtime 'tensorrt' is not what its spec"),
    (lambda t, q: t.update(cpu_model="Pentium II"), "t.json: cpu_model 'Pentium II' is not what its spec"),
    (lambda t, q: t.update(device_name="Pentium II"), "t.json: device_name 'Pentium II' is not what"),
    (lambda t, q: t.update(cpu_isa="amx" if t["cpu_isa"] != "amx" else "avx2"), "t.json: cpu_isa "),
    (lambda t, q: t["cpu_identity"]["cpuinfo"].update(flags=""), "t.json: cpu_isa "),
    (lambda t, q: t.update(cpu_identity="a CPU"), "t.json: the recorded CPU identity is not one cpu_identity() "),
    (lambda t, q: t.update(build_cpu_isa="VecSVE"), "t.json: build_cpu_isa 'VecSVE' is not what"),
    (lambda t, q: t.update(files_sha256={"model.pt": "cd" * 32}), "t.json: measured another artifact than the one "
                                                                  "q.json records"),
    (lambda t, q: q.pop("files_sha256"), "q.json: written by an older reidquant (no artifact sha256s"),
    (lambda t, q: q.update(type="fp32"), "q.json: holds a fp32 variant, but the spec says type eager_int8"),
], ids=["precision", "runtime", "cpu", "device", "isa", "identity", "bad-identity", "build-isa", "sha256",
        "old-build", "type"])
def test_a_label_that_its_spec_build_and_cpu_do_not_give_is_one_line(edit, message):
    from reidquant.table import check_labels
    from reidquant.variants import complete

    spec = complete({"type": "eager_int8"})
    t, q = extraction_records(spec)
    check_labels(t, q, spec, "cpu", "t.json", "q.json")  # as written: no complaint
    edit(t, q)
    with pytest.raises(ReidQuantError) as error:
        check_labels(t, q, spec, "cpu", "t.json", "q.json")
    assert str(error.value).startswith(message.split(" ", 1)[0]) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_latency_is_timed_per_call_side_by_side_with_its_compile_apart(monkeypatch):
    clock, shapes = [0.0], []

    def runner_taking(per_call, first_extra, name):
        seen = set()

        def forward(x):
            shapes.append((name, len(x)))
            clock[0] += per_call * len(x) ** 0.5 + (first_extra if len(x) not in seen else 0.0)
            seen.add(len(x))
            return x.flatten(1)
        return Runner(forward)

    monkeypatch.setattr(features.time, "perf_counter", lambda: clock[0])
    variant, fp32 = runner_taking(0.01, 30.0, "variant"), runner_taking(0.04, 0.0, "fp32")
    timing = features.latency(variant, torch.zeros(4, 3, 2, 2), warmup=2, rounds=20, reference=fp32)
    assert timing["compile_s"] == pytest.approx(30.0) and timing["first_call_s"] == pytest.approx(30.02)
    assert len(timing["call_s"]) == len(timing["reference_call_s"]) == 20
    assert timing["median_ms"] == pytest.approx(20.0) and timing["p90_ms"] >= timing["median_ms"]
    assert timing["speedup"] == pytest.approx(4.0) and timing["speedup_lo"] <= 4.0 <= timing["speedup_hi"]
    # The cold start already paid this shape's compile: its first call's time is reported instead.
    again = features.latency(variant, torch.zeros(4, 3, 2, 2), warmup=1, rounds=3, first_call_s=12.0)
    assert again["compile_s"] == pytest.approx(12.0 - 0.02) and "speedup" not in again


def test_latency_uses_the_runners_latency_set_up():
    calls = []
    runner = Runner(lambda x: calls.append("throughput") or x.flatten(1),
                    latency_forward=lambda x: calls.append("latency") or x.flatten(1),
                    config={"hint": "THROUGHPUT"}, latency_config={"hint": "LATENCY"})
    features.latency(runner, torch.zeros(1, 3, 2, 2), warmup=1, rounds=2)
    assert set(calls) == {"latency"}
    assert runner.for_latency().describe()["hint"] == "LATENCY" and runner.describe()["hint"] == "THROUGHPUT"
    plain = Runner(lambda x: x)
    assert plain.for_latency() is plain


def budget_table(tmp_path, rng, faithful_cos=0.998, cpu_isa="amx", faithful_rounds=5):
    """fp32, a fast int8 that loses too much mAP, a slower faithful int8, a small unfaithful one."""
    ap = rng.random(200)
    rank1 = (ap > 0.3).astype(int)
    specs = {"fp32": (ap, None, None, 1.0, 1000),
             "ov_fp32": (np.clip(ap - 0.001, 0, 1), 2.0, 1.5, 0.99999, 1000),  # the fastest fp32 a deployer ships
             "fast": (np.clip(ap - 0.03, 0, 1), 9.0, 5.0, 0.999, 250),
             "faithful": (np.clip(ap - 0.002, 0, 1), 7.0, 3.0, faithful_cos, 260),
             "tiny": (np.clip(ap - 0.005, 0, 1), 2.0, 1.5, 0.99, 100)}
    folders = [write_job(tmp_path, name, values, rank1, speedup=speedup, latency_speedup=lat, cos_min=cos,
                         size_bytes=size, precision="fp32" if name.endswith("fp32") else f"int8 {name}", cpu_isa=cpu_isa,
                         rounds=faithful_rounds if name == "faithful" else 5)
               for name, (values, speedup, lat, cos, size) in specs.items()]
    jobs = [(name, "cpu") for name in specs]
    paths = [[f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")]
    return rows(jobs, *paths, "synthetic", "trained", {"min_cos": 0.995, "max_mAP_drop": 1.0})


def test_what_to_ship_names_the_fastest_and_smallest_within_the_budget(tmp_path, rng):
    table = budget_table(tmp_path, rng).set_index("variant")
    assert table["within_budget"].to_dict() == {"fp32": True, "ov_fp32": True, "fast": False, "faithful": True,
                                                "tiny": False}
    # fast beats everything on latency, faithful beats the fp32 rows and tiny; fp32 is the most accurate
    assert table["pareto"].to_dict() == {"fp32": True, "ov_fp32": True, "fast": True, "faithful": True, "tiny": False}
    assert table.loc["faithful", "latency_speedup_b1"] == 3.0 and table.loc["fp32", "latency_speedup_b8"] == 1.0
    # Against the fastest fp32 row, ov_fp32: the quotient of the medians, the spread of every pair of rounds.
    assert set(table["fastest_fp32"]) == set(table["fastest_fp32_b1"]) == {"ov_fp32"}
    faithful = table.loc["faithful"]
    assert faithful["speedup_vs_fastest_fp32"] == pytest.approx(7.0 / 2.0)
    assert (faithful["speedup_vs_fastest_fp32_lo"], faithful["speedup_vs_fastest_fp32_hi"]) == pytest.approx(
        np.percentile([a / b for a in (6.5, 7.0, 7.5) for b in (1.5, 2.0, 2.5)], [10, 90]))
    assert faithful["latency_speedup_b1_vs_fastest_fp32"] == pytest.approx(3.0 / 1.5)
    assert table.loc["fp32", "speedup_vs_fastest_fp32"] == pytest.approx(1 / 2.0)
    assert table.loc["ov_fp32", ["speedup_vs_fastest_fp32", "speedup_vs_fastest_fp32_lo",
                                 "latency_speedup_b8_vs_fastest_fp32_hi"]].tolist() == [1.0, 1.0, 1.0]
    assert table.loc["faithful", "compile_s"] == pytest.approx(0.5 + 1.5)
    text = what_to_ship(table.reset_index(), min_cos=0.995, max_mAP_drop=1.0)
    assert text.startswith("## What to ship") and "### cpu" in text
    assert "- Fastest at batch 1: **faithful** (int8 faithful, torch): 3.3 ms per call (p90 12.0), 2.00x the " \
           "fastest fp32 (ov_fp32) [" in text and "], 3.00x eager fp32, cos_min 0.9980" in text
    assert "- Fastest at batch 32 (throughput): **faithful**" in text and "3.50x the fastest fp32 (ov_fp32)" in text
    assert "- Least memory: **fp32**" in text
    assert "- Smallest: **faithful**" in text  # tiny is smaller but outside the budget
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "no: mAP -2.9" in lines["fast"] and lines["fast"].endswith("| front |")
    assert "no: cos_min 0.9900" in lines["tiny"] and lines["tiny"].endswith("|  |")
    strict = what_to_ship(table.reset_index().assign(within_budget=False))
    assert "No row is within the budget." in strict
    assert "No int8 row keeps the budget" not in text


def test_a_speed_timed_in_too_few_rounds_is_marked_and_never_named(tmp_path, rng):
    """One round of a loaded machine is no figure to ship on (latency_rounds: 1 is allowed)."""
    table = budget_table(tmp_path, rng, faithful_rounds=1)
    faithful = table.set_index("variant").loc["faithful"]
    assert faithful["timed_rounds"] == 1 and not faithful["within_budget"]
    text = what_to_ship(table)
    assert "**faithful**" not in text and "- Fastest at batch 1: **ov_fp32**" in text
    (line,) = [line for line in text.splitlines() if line.startswith("| faithful |")]
    assert "no: timed in 1 rounds" in line
    assert "timed in at least 5 rounds (`select.min_rounds`)" in text
    assert "No int8 row keeps the budget: the speeds of faithful, which keep its fidelity, were timed in 1 " \
           "rounds, fewer than `select.min_rounds` (5)" in text


@pytest.mark.parametrize("isa, why", [
    ("avx2", "this CPU's best int8 instructions are avx2, without VNNI: u8 x s8 products are summed in pairs"),
    ("avx512_vnni", "this CPU has avx512_vnni int8 instructions, which do not saturate"),
])
def test_what_to_ship_says_why_no_int8_row_keeps_the_budget(tmp_path, rng, isa, why):
    table = budget_table(tmp_path, rng, faithful_cos=0.993, cpu_isa=isa)
    assert not table[table["precision"].str.startswith("int8")]["within_budget"].any()
    text = what_to_ship(table, min_cos=0.995, max_mAP_drop=1.0)
    (line,) = [line for line in text.splitlines() if line.startswith("No int8 row keeps the budget")]
    assert why in line
    # The most faithful int8 row by its worst cosine, with its figures and what it misses.
    assert "The most faithful int8 row is **faithful** (int8 faithful, torch): cos_min 0.9930" in line
    assert "2.00x the fastest fp32 (ov_fp32) [1.86, 2.16], 3.00x eager fp32 at batch 1, 3.50x the fastest fp32 " \
           "(ov_fp32) [" in line and "7.00x eager fp32 at batch 32 (no: cos_min 0.9930)." in line
    assert "- Fastest at batch 1: **ov_fp32**" in text  # beside the rows that do keep it


def test_latency_plot_is_drawn(tmp_path, rng):
    from types import SimpleNamespace

    from reidquant.plots import plot_summary

    table = budget_table(tmp_path, rng)
    outputs = SimpleNamespace(**{k: tmp_path / "plots" / f"{k}.png"
                                 for k in ("accuracy", "size", "fidelity", "latency")})
    plot_summary(table, outputs)
    assert (tmp_path / "plots" / "latency.png").stat().st_size > 10_000


def test_decision_plots_name_every_point_without_overlap(tmp_path, rng):
    """Rows of nearly the same speed and accuracy (int8, bf16, fp16_dynamic_seed on a Zen 5)
    still get a name each, none over another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from reidquant.plots import decision_figure

    table = budget_table(tmp_path, rng)
    crowded = table.iloc[[2, 3, 4]].assign(variant=["int8", "bf16", "fp16_dynamic_seed"], mAP_delta=-0.2,
                                                                 mAP_delta_lo=-0.3, mAP_delta_hi=-0.1)
    table = pd.concat([table, crowded], ignore_index=True)
    for speed in ("speedup_vs_fastest_fp32", "latency_speedup_b1_vs_fastest_fp32"):
        fig, labels = decision_figure(table, speed, "speed")
        renderer = FigureCanvasAgg(fig).get_renderer()
        boxes = [Text.get_window_extent(label, renderer) for label in labels]  # the names, not their lines
        assert [label.get_text().split("  ")[0] for label in labels] == list(table["variant"])
        assert "cos_min 0.9980" in labels[3].get_text()
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        assert fig.axes[0].get_legend() is not None and not fig.axes[0].get_legend().get_texts()[0].get_text() \
            .startswith(tuple(table["variant"]))  # the legend names the front and the budget, not the rows


def test_sensitivity_is_named_written_and_drawn(tmp_path):
    from reidquant.markdown import sensitivity_markdown
    from reidquant.sensitivity import read_csv, write_csv
    from reidquant.summary import sensitivity_report

    layers = [("features.conv0", "conv0"), ("features.denseblock1.denselayer1.conv1", "denseblock1"),
              ("features.transition1.conv", "transition1"), ("embedding.0", "embedding")]
    rows = [{"index": i, "layer": layer, "reference_name": f"model.{layer}", "part": part,
             "op": "linear" if part == "embedding" else "conv2d", "sqnr_db": db}
            for i, ((layer, part), db) in enumerate(zip(layers, [30.0, 12.5, 25.0, 18.0]))]
    rows[1]["cos_mean_gain"] = 0.0012
    # OpenVINO's layers: what reverting each one's quantizers to float gains, no SQNR.
    ov_rows = [{**row, "sqnr_db": None, "cos_mean_gain": gain} for row, gain in zip(rows, [0.004, -1e-5, 2e-4, 0.0])]
    write_csv(rows, tmp_path / "int8" / "sensitivity.csv")
    write_csv(ov_rows, tmp_path / "ov_int8" / "sensitivity.csv")
    written = pd.read_csv(tmp_path / "ov_int8" / "sensitivity.csv")
    assert written["sqnr_db"].isna().all() and written["cos_mean_gain"].tolist() == [0.004, -1e-5, 2e-4, 0.0]
    written = pd.read_csv(tmp_path / "int8" / "sensitivity.csv")
    assert list(written.columns) == ["index", "layer", "reference_name", "part", "op", "sqnr_db", "cos_mean_gain"]
    assert written["sqnr_db"].tolist() == [30.0, 12.5, 25.0, 18.0]
    assert written["cos_mean_gain"].isna().tolist() == [True, False, True, True]
    assert read_csv(tmp_path / "int8" / "sensitivity.csv") == [{**row, "cos_mean_gain": row.get("cos_mean_gain")}
                                                                for row in rows]
    found = sensitivity_report(["int8", "ov_int8"], [tmp_path / "int8" / "sensitivity.csv",
                                                     tmp_path / "ov_int8" / "sensitivity.csv"],
                               tmp_path / "sensitivity.md", tmp_path / "plots" / "sensitivity.png")
    text = (tmp_path / "sensitivity.md").read_text()
    assert text.startswith("## Most sensitive layers") and text == sensitivity_markdown(found).lstrip("\n")
    assert ("- **int8**: `features.denseblock1.denselayer1.conv1` (12.5 dB, +0.0012 cos_mean in float), "
            "`embedding.0` (18.0 dB)") in sensitivity_markdown(found, count=2)
    assert ("- **ov_int8**: `features.conv0` (+0.004 cos_mean in float), `features.transition1.conv` "
            "(+0.0002 cos_mean in float)") in sensitivity_markdown(found, count=2)
    assert sensitivity_markdown({}) == ""
    assert (tmp_path / "plots" / "sensitivity.png").stat().st_size > 10_000


def test_budgeted_builds_say_what_they_reached_and_left_in_float(tmp_path):
    from reidquant.markdown import budget_markdown

    control = {"metric": "cos_mean", "max_drop": 0.0005, "max_float_layers": 8, "fp32_value": 1.0}
    records = {
        "fp32": {"variant": "fp32", "type": "fp32"},
        "int8_auto": {"variant": "int8_auto", "float_layers": ["features.conv0", "embedding.0"],
                      "accuracy_control": {**control, "value": 0.9996, "drop": 0.0004, "met": True}},
        "ov_int8_ac": {"variant": "ov_int8_ac", "float_layers": [f"layer{i}" for i in range(10)],
                       "accuracy_control": {**control, "value": 0.999, "drop": 0.001, "met": False}},
    }
    paths = []
    for name, record in records.items():
        write_json(tmp_path / name / "quantize.json", record)
        paths += [tmp_path / name / "quantize.json"] * 2  # one row per device
    text = budget_markdown(paths)
    assert text.count("- **") == 2 and "## Budgeted builds" in text
    assert ("- **int8_auto**: cos_mean drop 0.0004 on val against a budget of 0.0005 (met), 2 layer(s) in float: "
            "`features.conv0`, `embedding.0`") in text
    assert "(NOT met), 10 layer(s) in float: `layer0`," in text and "`layer7` and 2 more" in text
    assert budget_markdown(paths[:2]) == ""
