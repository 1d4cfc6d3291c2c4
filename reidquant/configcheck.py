"""Config validation with one line per problem, naming the field (``variants.int8.type``)."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from reidquant.errors import ReidQuantError

# The smallest input side every architecture runs: DenseNet-121's (its stem and three 2x2
# transition pools: 28 fails in the last pool, 29 runs; the same with stride 1). ResNet-50 runs
# any size; the config is checked before the checkpoint says which network it holds.
MIN_INPUT_SIZE = 29
REFERENCE = "fp32"
# What the workflow itself writes directly under results/: a variant's folder results/<name>/
# must not be one of them.
RESULTS_NAMES = ("summary.csv", "summary.md", "sensitivity.md", "report.html", "plots", "logs", "train", "untrained")
# results/<name>.unranked/ is the fully int8 build a float_modules auto variant <name> ranks its layers by.
UNRANKED = ".unranked"
# The one schema of the config and of every spec the command line takes: package data, read by
# the workflow (common.smk) and by ``python -m reidquant`` alike, installed or in a clone.
SCHEMA_PATH = Path(str(resources.files("reidquant").joinpath("config.schema.yaml")))

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", type(None): "null", str: "string"}


def coerce_config(config: dict, schema_path: Path = SCHEMA_PATH) -> dict:
    """Turn strings into the booleans, numbers and nulls the schema asks for, in place.

    Snakemake reads nested ``--config`` values with YAML's base loader, so
    ``--config 'dataset={check_counts: false}'`` arrives as the string ``'false'``. A string
    that does not read as an allowed type is left alone for validation to name.
    """
    return _coerce(config, yaml.safe_load(Path(schema_path).read_text()))


def _coerce(value, schema: dict):
    if isinstance(value, dict):
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, extra if isinstance(extra, dict) else None)
            if sub:
                value[key] = _coerce(item, sub)
        for branch in schema.get("allOf", []):  # per-type options of a variant
            if "if" in branch and jsonschema.Draft202012Validator(branch["if"]).is_valid(value):
                _coerce(value, branch["then"])
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(item, schema["items"]) for item in value]
    if isinstance(value, str):
        return _scalar(value, schema)
    return value


def _scalar(text: str, schema: dict):
    allowed = schema.get("type", [])
    allowed = {allowed} if isinstance(allowed, str) else set(allowed)
    allowed |= {JSON_TYPES[type(v)] for v in schema.get("enum", [])}
    # A string the schema takes as it is; in an enum, only one of its own strings (so that
    # "false" in enum [auto, true, false] reads as the boolean).
    if "string" in allowed and text in schema.get("enum", [text]):
        return None if "null" in allowed and text in ("null", "~") else text
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(parsed, str) and "number" in allowed:  # YAML 1.1 reads 1e-3 as a string
        try:
            parsed = float(text)
        except ValueError:
            return text
    kind = JSON_TYPES.get(type(parsed))
    if kind in allowed or (kind == "integer" and "number" in allowed):
        return parsed
    return text


def problem(where: str, error: jsonschema.ValidationError) -> str:
    """``<where> field a.b: message``, or ``<where>: message`` for the object itself."""
    path = ".".join(str(part) for part in error.absolute_path)
    return f"{where} field {path}: {error.message}" if path else f"{where}: {error.message}"


# The bounds where infinity means "no limit"; anywhere else a number must be finite.
UNLIMITED_BY_INFINITY = ("max_mAP_drop", "max_drop")


def check_finite(value, where: str, path: tuple = ()) -> None:
    """Refuse NaN anywhere in a config value, and infinity except as an upper bound of
    ``UNLIMITED_BY_INFINITY`` (+inf: no limit): one line naming the field. JSON Schema's
    ``minimum`` and ``maximum`` let both through."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, where, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_finite(item, where, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        field = ".".join(map(str, path))
        place = f"{where} field {field}" if field else where
        if math.isnan(value):
            raise ReidQuantError(f"{place}: NaN is not a number")
        if value > 0 and path and path[-1] in UNLIMITED_BY_INFINITY:
            return
        meaning = " (.inf means no limit only for " + " and ".join(UNLIMITED_BY_INFINITY) + ")"
        raise ReidQuantError(f"{place}: {value} is not a finite number{meaning}")


def check_config(config: dict, schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ReidQuantError naming the first wrong field of ``config``."""
    check_finite(config, "config")
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ReidQuantError(problem("config", best))
    variants = config["variants"]
    for name in variants:
        if name in RESULTS_NAMES:
            raise ReidQuantError(f"config field variants.{name}: the name collides with the workflow's own "
                                 f"results/{name}; choose another (reserved: {', '.join(RESULTS_NAMES)})")
        if name.endswith(UNRANKED):
            raise ReidQuantError(f"config field variants.{name}: names ending in {UNRANKED} are the workflow's "
                                 f"own (the fully int8 build a float_modules auto variant ranks its layers by)")
    if REFERENCE not in variants:
        raise ReidQuantError(f"config field variants: a variant named {REFERENCE} is required "
                             f"(every row is compared against it)")
    if variants[REFERENCE]["type"] != REFERENCE:
        raise ReidQuantError(f"config field variants.{REFERENCE}.type: the reference every row is compared "
                             f"against must be type {REFERENCE}, not {variants[REFERENCE]['type']}")


def check_input_size(height: int, width: int, ms=(1,), field: str = "ms") -> None:
    """Refuse input sizes (after each multi-scale factor, applied as sqrt) the network cannot run."""
    for scale in ms:
        factor = float(scale) ** 0.5
        h, w = int(height * factor), int(width * factor)  # F.interpolate floors the scaled size
        if min(h, w) < MIN_INPUT_SIZE:
            size = f"scale {scale} turns the {height}x{width} input into {h}x{w}" if factor != 1 else \
                f"{height}x{width} is too small"
            raise ReidQuantError(f"{field}: {size}; the networks need at least {MIN_INPUT_SIZE} pixels per side "
                                  f"(ft_net_dense's minimum)")


def schema_part(*keys: str, schema_path: Path = SCHEMA_PATH) -> dict:
    """The sub-schema at ``keys`` (``"variants"`` gives the schema of one variant's spec)."""
    part = yaml.safe_load(Path(schema_path).read_text())
    for key in keys:
        part = part["properties"][key]
    return part.get("additionalProperties", part) if keys == ("variants",) else part


def section_defaults(key: str) -> dict:
    """Config section ``key`` as the schema's defaults fill it in."""
    return checked({}, schema_part(key), f"config section {key}")


def checked(value: dict, schema: dict, where: str) -> dict:
    """``value`` checked against ``schema`` (one line naming the field), with its defaults filled."""
    if not isinstance(value, dict):
        raise ReidQuantError(f"{where}: expected a JSON object, got {type(value).__name__}")
    check_finite(value, where)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ReidQuantError(problem(where, best))
    return _with_defaults(value, schema)


def _with_defaults(value: dict, schema: dict) -> dict:
    filled = dict(value)
    for key, sub in schema.get("properties", {}).items():
        if key not in filled and isinstance(sub, dict) and "default" in sub:
            filled[key] = sub["default"]
    for branch in schema.get("allOf", []):
        if "if" in branch and jsonschema.Draft202012Validator(branch["if"]).is_valid(filled):
            filled = _with_defaults(filled, branch["then"])
    return filled
