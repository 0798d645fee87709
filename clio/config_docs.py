"""Render the reference of every config setting from the pydantic models.

`docs/CONFIG.md` is this output; a test keeps the two identical.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _default(field: FieldInfo) -> Any:
    if field.default_factory is None and field.default is PydanticUndefined:
        return "(required)"
    # A factory that reads earlier fields (the facets' per-backend default) gets none of
    # them here, so it documents the default of an empty config.
    value = field.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"({len(value)} built-in items)"
    return json.dumps(value)


def _nested_model(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def iter_settings(model: type[BaseModel], prefix: str = "") -> list[tuple[str, FieldInfo]]:
    """Every setting as (dotted path, field), sections included; list items use `[]`."""
    out: list[tuple[str, FieldInfo]] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        out.append((path, field))
        nested = _nested_model(field)
        if nested is not None:
            is_list = getattr(field.annotation, "__origin__", None) is list
            out.extend(iter_settings(nested, f"{path}[]." if is_list else f"{path}."))
    return out


def render_config_docs(model: type[BaseModel]) -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `clio/config.py` (`clio config --docs`). Every setting is optional;",
        "a YAML file in `configs/` sets only what differs. Secrets are never set here:",
        "settings ending in `_env` name the environment variable that holds them.",
        "",
        "| setting | default | description |",
        "|---|---|---|",
    ]
    for path, field in iter_settings(model):
        description = (field.description or "").replace("|", "\\|")
        default = str(_default(field)).replace("|", "\\|")
        lines.append(f"| `{path}` | `{default}` | {description} |")
    return "\n".join(lines) + "\n"
