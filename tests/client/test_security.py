"""inferd.client with an API key over TLS, HTTP and gRPC, against a real server that
requires keys and serves only TLS (certificates made with the openssl CLI)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferd.client import Client, GrpcClient
from inferd.errors import Unauthenticated, Unavailable
from inferd.gateway.keys import Scope, new_key
from tests.conftest import ServerProcess
from tests.e2e.test_tls import issue, openssl, wait_ready

KEY, ENTRY = new_key("client-test", Scope.INFER)
X = {"in_x": np.array([[1.0, 2.0]], dtype=np.float32)}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA (ca.pem) and a server certificate for 127.0.0.1 it signed."""
    folder = tmp_path_factory.mktemp("client-certs")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=client test CA",
        cwd=folder,
    )  # fmt: skip
    issue(folder, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    return folder


@pytest.fixture(scope="module")
def secure(client_repo: Path, certs: Path) -> Iterator[ServerProcess]:
    env = {
        "INFERENCE_SERVER__TLS_CERT_FILE": str(certs / "server.pem"),
        "INFERENCE_SERVER__TLS_KEY_FILE": str(certs / "server.key"),
        "INFERENCE_SERVER__API_KEYS": ENTRY.line(),
        "INFERENCE_SERVER__REQUIRE_API_KEY": "true",
    }
    server = ServerProcess(client_repo, env=env)
    server.url = server.url.replace("http://", "https://")
    try:
        wait_ready(server, verify=ssl.create_default_context(cafile=certs / "ca.pem"))
        yield server
    finally:
        server.stop()


def test_https_with_a_key(secure: ServerProcess, certs: Path) -> None:
    with Client(secure.url, api_key=KEY, verify=str(certs / "ca.pem")) as client:
        assert client.infer("cached", X)["out_x"].tolist() == [[1.0, 2.0]]
    keyless = Client(secure.url, verify=str(certs / "ca.pem"))
    with keyless, pytest.raises(Unauthenticated, match="HTTP 401"):
        keyless.infer("cached", X)
    untrusting = Client(secure.url, api_key=KEY)  # the system's CAs only
    with untrusting, pytest.raises(Unavailable, match="cannot reach"):
        untrusting.infer("cached", X)


def test_grpc_over_tls_with_a_key(secure: ServerProcess, certs: Path) -> None:
    ca = (certs / "ca.pem").read_bytes()
    with GrpcClient(secure.grpc_target, api_key=KEY, root_certificates=ca) as client:
        assert client.infer("cached", X)["out_x"].tolist() == [[1.0, 2.0]]
    keyless = GrpcClient(secure.grpc_target, root_certificates=ca)
    with keyless, pytest.raises(Unauthenticated, match="UNAUTHENTICATED"):
        keyless.infer("cached", X)
