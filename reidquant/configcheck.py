"""Config validation with one line per problem, naming the field (``variants.int8.type``)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from reidquant.errors import ReidQuantError


def field_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def check_config(config: dict, schema_path: Path) -> None:
    """Raise ReidQuantError naming the first wrong field of ``config``."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ReidQuantError(f"config field {field_path(best)}: {best.message}")
