"""The deploy/ proxy configurations rendered for loopback and run for real.

The shipped files name replicas ``inferd-1..3`` on ports 8080 (HTTP) and 8081 (gRPC) and
listen on 8080/8081; rendering swaps in free loopback ports and puts every path nginx or
HAProxy writes (pid, logs, temp files, the admin socket) under a test folder.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tests.conftest import free_port, system_binary, wait_until

DEPLOY: Final = Path(__file__).resolve().parents[2] / "deploy"
NGINX_CONF: Final = DEPLOY / "nginx" / "inferd.conf"
HAPROXY_CFG: Final = DEPLOY / "haproxy" / "haproxy.cfg"


class Replica:
    """Where one inferd replica listens."""

    def __init__(self, http_port: int, grpc_port: int) -> None:
        self.http_port = http_port
        self.grpc_port = grpc_port


def _replace(pattern: str, text: str, replacement: object) -> str:
    rendered, count = re.subn(pattern, replacement, text)  # type: ignore[call-overload]
    assert count, f"{pattern!r} not found in the shipped configuration"
    return str(rendered)


def render_nginx(
    folder: Path,
    http_port: int,
    grpc_port: int,
    replicas: Sequence[Replica],
    down: frozenset[int] = frozenset(),
) -> Path:
    """deploy/nginx/inferd.conf inside a main configuration of its own; replicas numbered
    from 1, those in ``down`` marked down. Returns the main file."""
    text = NGINX_CONF.read_text()
    text = _replace(r"listen 8080;", text, f"listen 127.0.0.1:{http_port};")
    text = _replace(r"listen 8081 http2;", text, f"listen 127.0.0.1:{grpc_port} http2;")

    def server(match: re.Match[str]) -> str:
        number, port = int(match.group(1)), int(match.group(2))
        replica = replicas[number - 1]
        address = replica.http_port if port == 8080 else replica.grpc_port
        return f"server 127.0.0.1:{address}{' down' if number in down else ''}"

    text = _replace(r"server inferd-(\d+):(\d+)", text, server)
    (folder / "inferd.conf").write_text(text)
    temp = folder / "temp"
    temp.mkdir(exist_ok=True)
    main = folder / "nginx.conf"
    main.write_text(
        f"""user root;
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {folder}/inferd.conf;
}}
"""
    )
    return main


def render_haproxy(
    folder: Path, http_port: int, grpc_port: int, replicas: Sequence[Replica]
) -> Path:
    text = HAPROXY_CFG.read_text()
    text = _replace(r"bind :8080", text, f"bind 127.0.0.1:{http_port}")
    text = _replace(r"bind :8081", text, f"bind 127.0.0.1:{grpc_port}")
    text = _replace(r"/var/run/haproxy/admin\.sock", text, str(folder / "admin.sock"))

    def server(match: re.Match[str]) -> str:
        replica = replicas[int(match.group(1)) - 1]
        if match.group(2) == "8080":
            return f"127.0.0.1:{replica.http_port}"
        return f"127.0.0.1:{replica.grpc_port} port {replica.http_port}"

    text = _replace(r"inferd-(\d+):(8080|8081 port 8080)", text, server)
    path = folder / "haproxy.cfg"
    path.write_text(text)
    return path


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    def __init__(self, folder: Path, replicas: Sequence[Replica]) -> None:
        self.folder = folder
        self.replicas = replicas
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.binary = system_binary("nginx")
        self.main = render_nginx(folder, self.http_port, self.grpc_port, replicas)
        self.process = subprocess.Popen(self._command(), stderr=subprocess.DEVNULL)
        wait_until(lambda: _listening(self.http_port), 10, "nginx to listen")

    def _command(self, *extra: str) -> list[str]:
        log = str(self.folder / "error.log")
        return [self.binary, "-p", str(self.folder), "-c", str(self.main), "-e", log, *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._command("-t"), capture_output=True, text=True, check=False)

    def workers(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return len(children.read_text().split())

    def reload(self, down: frozenset[int] = frozenset()) -> None:
        """Rewrite the upstreams (``down`` left out) and reload; returns once the workers
        of the old configuration have finished their requests and exited."""
        render_nginx(self.folder, self.http_port, self.grpc_port, self.replicas, down)
        subprocess.run(self._command("-s", "reload"), check=True, capture_output=True)
        wait_until(lambda: self.workers() == 2, 10, "nginx to start its new worker")
        wait_until(lambda: self.workers() == 1, 20, "nginx's old worker to finish")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class HAProxy:
    def __init__(self, folder: Path, replicas: Sequence[Replica]) -> None:
        self.folder = folder
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.binary = system_binary("haproxy")
        self.config = render_haproxy(folder, self.http_port, self.grpc_port, replicas)
        self.process = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _listening(self.http_port), 10, "haproxy to listen")

    def check(self) -> subprocess.CompletedProcess[str]:
        command = [self.binary, "-c", "-f", str(self.config)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def command(self, line: str) -> str:
        """One command of the runtime API (the admin socket)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.folder / "admin.sock"))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self, backend: str = "inferd_http") -> dict[str, dict[str, str]]:
        """``show stat`` of a backend's servers: name -> column -> value."""
        lines = self.command("show stat").lstrip("# ").splitlines()
        header = lines[0].split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            row["svname"]: row
            for row in rows
            if row.get("pxname") == backend and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
