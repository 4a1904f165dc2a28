"""TLS and mutual TLS on HTTP and gRPC, with certificates the test makes (openssl CLI)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, wait_until


def openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "the openssl command is needed to make test certificates"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


def issue(folder: Path, name: str, subject: str, extensions: str) -> None:
    """``name``.key and ``name``.pem signed by ca.pem."""
    (folder / f"{name}.ext").write_text(extensions + "\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=folder,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=inferd test CA",
        cwd=folder,
    )  # fmt: skip
    issue(folder, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    issue(folder, "client", "/CN=client", "extendedKeyUsage=clientAuth")
    return folder


def tls_server(example_repo: Path, certs: Path, mutual: bool) -> ServerProcess:
    env = {
        "INFERENCE_SERVER__TLS_CERT_FILE": str(certs / "server.pem"),
        "INFERENCE_SERVER__TLS_KEY_FILE": str(certs / "server.key"),
    }
    if mutual:
        env["INFERENCE_SERVER__TLS_CLIENT_CA_FILE"] = str(certs / "ca.pem")
    server = ServerProcess(example_repo, "--default-model", "tiny", env=env)
    server.url = server.url.replace("http://", "https://")
    return server


def wait_ready(server: ServerProcess, **tls: object) -> None:
    def ready() -> bool:
        assert server.process.poll() is None, "the server exited"
        try:
            return httpx.get(f"{server.url}/ready", **tls).status_code == 200  # type: ignore[arg-type]
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "the TLS server")


@pytest.fixture(scope="module")
def tls(example_repo: Path, certs: Path) -> Iterator[ServerProcess]:
    server = tls_server(example_repo, certs, mutual=False)
    try:
        wait_ready(server, verify=ssl.create_default_context(cafile=certs / "ca.pem"))
        yield server
    finally:
        server.stop()


def test_https_and_grpc_over_tls(tls: ServerProcess, certs: Path) -> None:
    ca = ssl.create_default_context(cafile=certs / "ca.pem")
    answer = httpx.post(f"{tls.url}/predict", json={"inputs": [1, 2, 3, 4]}, verify=ca)
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 2
    with pytest.raises(httpx.RemoteProtocolError):  # plain text to a TLS port
        httpx.get(tls.url.replace("https://", "http://") + "/healthz", timeout=5)
    credentials = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    with grpc.secure_channel(tls.grpc_target, credentials) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest()).live
    with grpc.insecure_channel(tls.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate(example_repo: Path, certs: Path) -> None:
    server = tls_server(example_repo, certs, mutual=True)
    ca = ssl.create_default_context(cafile=certs / "ca.pem")
    context = ssl.create_default_context(cafile=certs / "ca.pem")
    context.load_cert_chain(certs / "client.pem", certs / "client.key")
    try:
        wait_ready(server, verify=context)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{server.url}/healthz", verify=ca, timeout=5)
        root = (certs / "ca.pem").read_bytes()
        with_cert = grpc.ssl_channel_credentials(
            root, (certs / "client.key").read_bytes(), (certs / "client.pem").read_bytes()
        )
        with grpc.secure_channel(server.grpc_target, with_cert) as channel:
            assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest()).live
        without = grpc.ssl_channel_credentials(root)
        with grpc.secure_channel(server.grpc_target, without) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        assert server.stop() == 0
