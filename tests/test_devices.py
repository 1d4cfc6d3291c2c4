"""What the machine is, read from /proc/cpuinfo, and the int8 saturation guards it decides.

The fixtures are /proc/cpuinfo texts of the CPU kinds the project runs on, so no test here
depends on the machine it runs on.
"""

from pathlib import Path

import pytest

from reidquant.devices import cpu_flags, cpu_isa, cpu_model, parse_cpuinfo, saturates_int8
from reidquant.errors import ReidQuantError
from reidquant.variants import complete, resolve

FIXTURES = Path(__file__).parent / "fixtures" / "cpuinfo"
KINDS = {  # fixture -> (int8 instructions, model as the table names it)
    "zen3": ("avx2", "AMD EPYC Processor (family 25, model 1)"),
    "zen4": ("avx512_vnni", "AMD EPYC 9R14 96-Core Processor"),
    "xeon_amx": ("amx", "Intel(R) Xeon(R) Platinum 8488C"),
    "xeon_vnni": ("avx512_vnni", "Intel(R) Xeon(R) CPU @ 2.80GHz (family 6, model 85)"),
    "graviton3": ("neon_i8mm", None),
}


def info(kind: str) -> dict:
    return parse_cpuinfo((FIXTURES / f"{kind}.txt").read_text())


@pytest.mark.parametrize("kind", list(KINDS))
def test_int8_instruction_set_and_model_are_read_from_cpuinfo(kind):
    isa, model = KINDS[kind]
    assert cpu_isa(cpu_flags(info(kind))) == isa
    if model is not None:
        assert cpu_model(info(kind)) == model


def test_only_the_first_processor_is_read():
    zen3 = info("zen3")
    assert zen3["processor"] == "0" and "bogomips" in zen3 and "topoext" in zen3["flags"]


@pytest.mark.parametrize("flags, isa", [
    ("sse4_1 sse4_2 avx avx2 avx_vnni", "avx_vnni"),  # Alder Lake: VNNI without AVX-512
    ("sse4_1 avx avx2 avx512f avx512bw", "avx512"),  # Skylake-SP: AVX-512 without VNNI
    ("sse4_1 sse4_2", "sse"),
    ("fp asimd asimddp", "neon_dotprod"),
    ("", "unknown"),
])
def test_each_instruction_set_is_named_by_its_best_int8_path(flags, isa):
    assert cpu_isa(frozenset(flags.split())) == isa


@pytest.mark.parametrize("isa, saturates", [("avx2", True), ("avx512", True), ("sse", True), ("avx_vnni", False),
                                            ("avx512_vnni", False), ("amx", False), ("neon_dotprod", False)])
def test_only_isas_without_vnni_saturate(isa, saturates):
    assert saturates_int8(isa) == saturates


# What ``auto`` decides for each int8 type, by the building CPU's instruction set.
AUTO = {
    "avx2": {"ort": True, "ov": "first_layer_only", "pt2e": False},
    "avx512": {"ort": True, "ov": "first_layer_only", "pt2e": False},
    "avx_vnni": {"ort": False, "ov": "disable", "pt2e": False},
    "avx512_vnni": {"ort": False, "ov": "disable", "pt2e": False},
    "amx": {"ort": False, "ov": "disable", "pt2e": False},
}
INT8 = {"ort": ({"type": "onnxruntime", "precision": "int8"}, "reduce_range"),
        "ov": ({"type": "openvino", "precision": "int8"}, "overflow_fix"),
        "pt2e": ({"type": "pt2e_int8"}, "reduce_range")}


@pytest.mark.parametrize("isa", list(AUTO))
@pytest.mark.parametrize("kind", list(INT8))
def test_auto_guard_is_decided_by_the_building_cpu(isa, kind):
    spec, option = INT8[kind]
    resolved, record = resolve(complete(spec), isa)
    assert resolved[option] == AUTO[isa][kind]
    assert record == {"option": option, "setting": "auto", "used": AUTO[isa][kind], "cpu_isa": isa}


def test_a_guard_set_by_hand_is_kept_on_every_cpu():
    resolved, record = resolve(complete({"type": "openvino", "precision": "int8", "overflow_fix": "enable"}), "amx")
    assert resolved["overflow_fix"] == "enable" and record["setting"] == record["used"] == "enable"
    resolved, record = resolve(complete({"type": "onnxruntime", "precision": "int8", "reduce_range": False}), "avx2")
    assert resolved["reduce_range"] is False and record["used"] is False


def test_float_precisions_and_the_seed_recipe_have_no_guard_to_decide():
    assert resolve(complete({"type": "openvino", "precision": "fp32"}), "avx2")[1] is None
    assert resolve(complete({"type": "fp32"}), "avx2")[1] is None
    spec = complete({"type": "eager_int8"})
    resolved, record = resolve(spec, "avx2")
    assert resolved == spec and record["setting"] == "default_qconfig" and record["used"] is True


@pytest.mark.parametrize("spec, message", [
    ({"type": "pt2e_int8", "reduce_range": "yes"}, "field reduce_range: 'yes' is not one of ['auto', True, False]"),
    ({"type": "onnxruntime", "precision": "int8", "reduce_range": 7},
     "field reduce_range: 7 is not one of ['auto', True, False]"),
    ({"type": "openvino", "precision": "int8", "overflow_fix": "first_layer"},
     "field overflow_fix: 'first_layer' is not one of ['auto', 'disable', 'first_layer_only', 'enable']"),
    ({"type": "eager_int8", "reduce_range": True}, "Additional properties are not allowed ('reduce_range'"),
])
def test_a_bad_guard_is_one_line_naming_the_field(spec, message):
    with pytest.raises(ReidQuantError) as error:
        complete(spec, "config field variants.x")
    assert message in str(error.value) and "\n" not in str(error.value)
