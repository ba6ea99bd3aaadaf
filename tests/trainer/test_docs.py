"""docs/trainer.md is the operator's contract: it must name every variable and result field."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from seaway_serving.trainer import result as results
from seaway_serving.trainer.settings import ENV_PREFIX, TrainSettings

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "trainer.md").read_text()


def test_every_variable_is_documented() -> None:
    missing = [f"{ENV_PREFIX}{name.upper()}" for name in TrainSettings.model_fields
               if f"`{ENV_PREFIX}{name.upper()}`" not in DOCS]
    assert not missing


def _fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        out.append(prefix + key)
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out += _fields(arg, prefix + key + ".")
    return out


def test_every_result_field_is_documented() -> None:
    table = DOCS[DOCS.index("| field | meaning |"):DOCS.index("## The gate")]
    missing = [f for f in _fields(results.TrainResult)
               if not any(form in table for form in (f"`{f}`", f"`{f}.",
                                                     f"`{f.rsplit('.', 1)[-1]}`"))]
    assert not missing
