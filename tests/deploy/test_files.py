"""deploy/: the Kubernetes and KServe manifests against the Kubernetes schemas (offline),
nginx -t and haproxy -c on the proxy files, and the Dockerfile read statically (there is
no Docker here)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from inferd.cli import main as inferd_main
from inferd.settings import Settings
from tests.cluster.proxies import (
    DEPLOY,
    HAPROXY_CFG,
    NGINX_CONF,
    Replica,
    render_haproxy,
    render_nginx,
)
from tests.conftest import system_binary

K8S_VERSION = "1.33"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
DEFAULTS = Settings()
REPLICAS = [Replica(18080 + i, 18180 + i) for i in range(3)]


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    docs = [doc for path in MANIFESTS for doc in load(path) if doc["kind"] == kind]
    assert len(docs) == 1, f"expected one {kind}"
    return docs[0]


def test_there_is_a_manifest_of_each_kind() -> None:
    kinds = sorted(doc["kind"] for path in MANIFESTS for doc in load(path))
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_match_the_kubernetes_schemas(path: Path) -> None:
    for doc in load(path):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_wrong_field_fails_validation() -> None:
    deployment = by_kind("Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_deployment_probes_and_drains_like_inferd() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    grace = float(env["INFERENCE_SERVER__SHUTDOWN_GRACE_S"])
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > grace + pause
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert by_kind("Service")["spec"]["selector"] == labels
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels
    target = by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        by_kind("Deployment")["metadata"]["name"],
    )


def kserve(kind: str) -> dict[str, Any]:
    docs = [doc for path in (DEPLOY / "kserve").glob("*.yaml") for doc in load(path)]
    return next(doc for doc in docs if doc["kind"] == kind)


def test_the_kserve_runtime_container_is_a_valid_container_running_inferd(
    tmp_path: Path,
) -> None:
    runtime = kserve("ServingRuntime")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    container = runtime["spec"]["containers"][0]
    # KServe's CRDs are not in the Kubernetes schemas: the container they hold is checked
    # as the container of a Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}
    pod["spec"] = {"containers": [container]}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert container["name"] == "kserve-container"
    args = container["args"]
    assert args[0] == "/mnt/models"
    # inferd's own parser accepts the arguments (`inferd config` prints what they give).
    assert inferd_main(["config", *args[1:]]) == 0


def test_the_inference_service_uses_the_runtime() -> None:
    service = kserve("InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == kserve("ServingRuntime")["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    formats = {f["name"] for f in kserve("ServingRuntime")["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_runs_inferd_as_pid_1_without_root() -> None:
    instructions = dockerfile()
    kinds = [kind for kind, _ in instructions]
    assert kinds[0] == "FROM" and "slim" in instructions[0][1]
    user = [value for kind, value in instructions if kind == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])  # exec form: a JSON array
    assert entrypoint == ["inferd", "serve"]
    assert json.loads(dict(instructions)["CMD"]) == []
    health = dict(instructions)["HEALTHCHECK"]
    command = json.loads(health.split("CMD", 1)[1])
    assert "/healthz" in command[-1]
    assert dict(instructions)["EXPOSE"].split() == ["8080", "8081"]
    env = " ".join(value for kind, value in instructions if kind == "ENV")
    assert "INFERENCE_HOST=0.0.0.0" in env.split()


def test_dockerfile_healthcheck_command_is_valid_python() -> None:
    health = dict(dockerfile())["HEALTHCHECK"]
    command = json.loads(health.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")
    assert shlex.split(health.split("CMD")[0])[0].startswith("--interval")


def test_proxy_body_limits_match_inferd() -> None:
    limit_mb = DEFAULTS.safeguards.max_request_size_mb
    sizes = re.findall(r"client_max_body_size (\d+)m;", NGINX_CONF.read_text())
    assert sizes and {int(s) for s in sizes} == {int(limit_mb)}
    denied = re.findall(r"content-length\) gt (\d+)", HAPROXY_CFG.read_text())
    assert denied and {int(d) for d in denied} == {DEFAULTS.safeguards.max_request_bytes}


def test_nginx_does_not_resend_a_post_that_was_sent() -> None:
    text = NGINX_CONF.read_text()
    assert "non_idempotent" not in text.split("#")[0] and re.search(
        r"^\s*proxy_next_upstream error timeout;", text, re.M
    )


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    main = render_nginx(tmp_path, 18000, 18001, REPLICAS)
    nginx = system_binary("nginx")
    command = [nginx, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "e.log")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_refuses_a_broken_configuration(tmp_path: Path) -> None:
    main = render_nginx(tmp_path, 18000, 18001, REPLICAS)
    (tmp_path / "inferd.conf").write_text(
        (tmp_path / "inferd.conf").read_text().replace("grpc_pass", "grpc_passs")
    )
    nginx = system_binary("nginx")
    command = [nginx, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "e.log")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "grpc_passs" in result.stderr


def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    config = render_haproxy(tmp_path, 18000, 18001, REPLICAS)
    command = [system_binary("haproxy"), "-c", "-f", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_haproxy_checks_readiness_and_retries_only_failed_connections() -> None:
    text = HAPROXY_CFG.read_text()
    assert text.count("http-check send meth GET uri /ready") == 2
    assert re.search(r"^\s*retry-on conn-failure$", text, re.M)
