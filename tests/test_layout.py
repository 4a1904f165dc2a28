"""The package's shape: no hand-written module grows past :data:`MOST_LINES` lines (one
concern per module; split when a second one moves in)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

PACKAGE: Final = Path(__file__).resolve().parents[1] / "src" / "inferd"
#: Generated from the .proto files (``make proto``), not written by hand.
GENERATED: Final = PACKAGE / "grpc" / "protos"
MOST_LINES: Final = 400


def hand_written() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if not p.is_relative_to(GENERATED))


def test_the_walk_sees_the_package() -> None:
    modules = hand_written()
    assert PACKAGE / "core" / "service.py" in modules
    assert PACKAGE / "settings" / "__init__.py" in modules
    assert not any(p.is_relative_to(GENERATED) for p in modules)


def test_no_hand_written_module_is_over_the_limit() -> None:
    over = {
        str(path.relative_to(PACKAGE)): lines
        for path in hand_written()
        if (lines := len(path.read_text().splitlines())) > MOST_LINES
    }
    assert over == {}, f"modules over {MOST_LINES} lines (split them by concern): {over}"
