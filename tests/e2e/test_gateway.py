"""The gateway on a real server: the control API behind a same-host nginx, keys over
REST, WebSocket and gRPC, request ids in gRPC metadata, CORS on the WebSocket handshake."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from inferd.gateway.keys import Scope, new_key
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, free_port, wait_until

ADMIN_KEY, ADMIN = new_key("ops", Scope.ADMIN)
INFER_KEY, INFER = new_key("app", Scope.INFER)
ORIGIN = "https://app.example.com"
CONTROL = (
    "/v2/repository/index",
    "/v2/repository/models/tiny/load",
    "/v2/repository/models/tiny/unload",
)

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def keyed_server(
    example_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(f"# operators\n{ADMIN.line()}\n")
    server = ServerProcess(
        example_repo,
        "--default-model",
        "tiny",
        env={
            "INFERENCE_SERVER__API_KEYS": INFER.line(),
            "INFERENCE_SERVER__API_KEYS_FILE": str(keys),
            "INFERENCE_SERVER__CORS_ORIGINS": ORIGIN,
        },
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def start_nginx(root: Path, upstream: int) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed (make test installs SYSTEM_PACKAGES)"
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, upstream=upstream, user=user))
    process = subprocess.Popen([nginx, "-p", str(root), "-c", str(conf)])
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (root / "error.log").read_text()
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 30, "nginx")
    return process, url


@pytest.fixture(scope="module")
def nginx_default(
    live_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    process, url = start_nginx(tmp_path_factory.mktemp("nginx"), live_server.http_port)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("path", CONTROL)
def test_default_settings_refuse_control_from_loopback_and_through_nginx(
    live_server: ServerProcess, nginx_default: str, path: str
) -> None:
    sidecar = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.6"))
    with sidecar:
        for client, url in (
            (httpx, live_server.url),
            (sidecar, live_server.url),
            (httpx, nginx_default),
        ):
            answer = client.post(f"{url}{path}", headers={"Host": "rebound.example"})
            assert answer.status_code == 403, (url, answer.text)
            assert "inferd keys new" in answer.json()["error"]
    assert httpx.get(f"{live_server.url}/v2/models/tiny/ready").status_code == 200


def test_default_grpc_refuses_control(live_server: ServerProcess) -> None:
    with grpc.insecure_channel(live_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="tiny"))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert stub.ModelReady(pb.ModelReadyRequest(name="tiny")).ready


@pytest.fixture(scope="module")
def nginx_keyed(
    keyed_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    process, url = start_nginx(tmp_path_factory.mktemp("nginx-keyed"), keyed_server.http_port)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": f"Bearer {INFER_KEY}"}, 403),
        ({"Authorization": f"Bearer {ADMIN_KEY}"}, 200),
        ({"X-API-Key": ADMIN_KEY}, 200),
    ],
)
def test_with_keys_through_nginx(nginx_keyed: str, headers: dict[str, str], status: int) -> None:
    answer = httpx.post(f"{nginx_keyed}/v2/repository/models/tiny/load", headers=headers)
    assert answer.status_code == status, answer.text
    index = httpx.post(f"{nginx_keyed}/v2/repository/index", headers=headers)
    assert index.status_code == status


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", f"Bearer {INFER_KEY}"),), grpc.StatusCode.PERMISSION_DENIED),
        ((("authorization", f"Bearer {ADMIN_KEY}"),), grpc.StatusCode.OK),
    ],
)
def test_grpc_keys_and_request_id(
    keyed_server: ServerProcess, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    with grpc.insecure_channel(keyed_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        call = stub.RepositoryIndex.with_call
        sent = (*metadata, ("x-request-id", "g-1"))
        try:
            _, answer = call(pb.RepositoryIndexRequest(), metadata=sent)
        except grpc.RpcError as exc:
            answer = exc  # type: ignore[assignment]
        assert answer.code() is code
        assert ("x-request-id", "g-1") in tuple(answer.trailing_metadata())


def test_websocket_handshake_names_the_allowed_origin(keyed_server: ServerProcess) -> None:
    url = keyed_server.url.replace("http://", "ws://") + "/predict/stream"
    with connect(url, origin=ORIGIN, additional_headers={"X-Request-Id": "w-1"}) as ws:  # type: ignore[arg-type]
        assert ws.response.headers["access-control-allow-origin"] == ORIGIN
        assert ws.response.headers["x-request-id"] == "w-1"
    with pytest.raises(InvalidStatus) as refused, connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
        pass
    assert refused.value.response.status_code == 403
