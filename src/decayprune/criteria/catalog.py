"""A table of the registered criteria: what ``decayprune criteria`` prints."""

from __future__ import annotations

from typing import Any

from .base import criterion_class, list_criteria

__all__ = ["criteria_table"]


def criteria_table() -> list[dict[str, Any]]:
    """One row per registered criterion: name, needs, summary, paper and options (default, description).

    Example:
        >>> row = next(r for r in criteria_table() if r["name"] == "taylor")
        >>> row["needs"], row["options"]["order"]["default"]
        (['data', 'grads'], 1)
    """
    rows = []
    for name in sorted(list_criteria()):
        cls = criterion_class(name)
        options = {
            key: {"default": field.get_default(call_default_factory=True), "description": field.description or ""}
            for key, field in cls.Options.model_fields.items()
        }
        rows.append(
            {"name": name, "needs": sorted(cls.needs), "summary": cls.summary, "paper": cls.paper, "options": options}
        )
    return rows
