"""The start-up summary's text."""

from __future__ import annotations

from pathlib import Path

from inferd.summary import summary
from tests.conftest import NodeFactory
from tests.e2e.test_startup_log import write_repo


async def test_the_summary_lists_every_version_and_marks_tls(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    repo = write_repo(tmp_path / "models", 2)
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    node = node_factory(repo)
    await node.start()
    text = summary(node, "https://127.0.0.1:8443", ("127.0.0.1", 8444), tls=True)
    lines = text.splitlines()
    assert lines[0] == "serving 1 of 2 model versions:"
    assert lines[1].split() == ["model", "version", "state", "reason"]
    assert lines[2].split()[:4] == ["broken", "1", "FAILED", "InvalidProtobuf:"]
    assert lines[3].split() == ["m", "1", "READY"]
    assert lines[4:] == [
        "  REST     https://127.0.0.1:8443  (OpenAPI: https://127.0.0.1:8443/docs)",
        "  gRPC     127.0.0.1:8444  (TLS)",
    ]
    assert "(TLS)" not in summary(node, "http://h:1", ("h", 2), tls=False)
