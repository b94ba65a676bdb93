"""Typed aliases for Dagster's pythonic-config base classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

# mypy needs a type argument; at runtime keep the unsubscripted pydantic base Dagster expects.
if TYPE_CHECKING:
    ConfigurableResource = dg.ConfigurableResource[Any]
else:
    ConfigurableResource = dg.ConfigurableResource

__all__ = ["ConfigurableResource"]
