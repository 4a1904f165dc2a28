"""docs/client.md and the README's client, CLI and dashboard sections run as written,
against a real server over the example repository (their addresses swapped for its ports)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from inferd.cli import main
from tests.conftest import ServerProcess

ROOT = Path(__file__).parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: README sections whose examples run here.
README_SECTIONS = ("Python client", "Client commands", "Dashboard")


def blocks(text: str) -> list[tuple[str, str]]:
    return FENCE.findall(text)


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def localized(code: str, server: ServerProcess) -> str:
    return code.replace("http://127.0.0.1:8080", server.url).replace(
        "127.0.0.1:8081", server.grpc_target
    )


def run(found: list[tuple[str, str]], server: ServerProcess) -> str:
    """Run the Python blocks in order in one namespace, and each ``inferd`` command line of
    the shell blocks; what they printed."""
    namespace: dict[str, object] = {"__name__": "docs"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for language, code in found:
            code = localized(code, server)
            if language == "python":
                exec(compile(code, "<docs>", "exec"), namespace)
                continue
            assert language == "sh", language
            for line in code.splitlines():
                argv = shlex.split(line)
                assert argv[0] == "inferd", line
                assert main(argv[1:]) == 0, line
    return out.getvalue()


def test_docs_client_page(live_server: ServerProcess) -> None:
    printed = run(blocks((ROOT / "docs" / "client.md").read_text()), live_server)
    assert "1 (2, 2)" in printed
    assert "HTTP 400: input 'input': expected shape [-1, 4], got [1, 3]" in printed
    for word in ("streams", "come", "word", "by"):
        assert f"\n{word}\n" in printed
    assert "[b'a', b'b']" in printed and "\n8\n" in printed
    assert '"model_name": "tiny"' in printed and '"text_output": ["three"]' in printed
    assert "['models', 'live']" in printed


@pytest.mark.parametrize("heading", README_SECTIONS)
def test_readme_sections(live_server: ServerProcess, heading: str) -> None:
    found = blocks(section((ROOT / "README.md").read_text(), heading))
    assert found, f"README's {heading} section has no example"
    run(found, live_server)
