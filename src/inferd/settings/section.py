"""The base of every settings section: a pydantic model that refuses unknown keys."""

from __future__ import annotations

from pydantic import BaseModel


class Section(BaseModel):
    model_config = {"extra": "forbid"}
