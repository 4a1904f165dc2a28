"""The inferd command: config, serve's repository checks, validate's report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from inferd.cli import main
from tests.conftest import ServerProcess, clean_environment
from tests.core.store.test_repository import make_model


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferd", *args],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def config_rows(output: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in output.splitlines():
        name, value, source = line.split(maxsplit=2)
        rows[name] = (value, source)
    return rows


def test_config_prints_each_value_and_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "inferd.yaml"
    config.write_text("performance:\n  max_batch_size: 8\nserver:\n  admin_token: s3cret\n")
    monkeypatch.setenv("INFERENCE_SERVER__PORT", "9000")
    assert main(["config", "--config", str(config), "--grpc-port", "0", "/srv/m"]) == 0
    rows = config_rows(capsys.readouterr().out)
    assert rows["server.port"] == ("9000", "env INFERENCE_SERVER__PORT")
    assert rows["server.grpc_port"] == ("0", "flag --grpc-port")
    assert rows["performance.max_batch_size"] == ("8", f"file {config}")
    assert rows["models.repository"] == ("/srv/m", "argument REPOSITORY")
    assert rows["server.host"] == ("127.0.0.1", "default")
    assert rows["models.allow_empty"] == ("false", "default")
    assert rows["models.poll_interval_s"] == ("0.0", "default")
    assert rows["server.admin_token"] == ("(set)", f"file {config}")


def test_the_poll_interval_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--poll-interval-s", "2.5", "/srv/m"]) == 0
    rows = config_rows(capsys.readouterr().out)
    assert rows["models.poll_interval_s"] == ("2.5", "flag --poll-interval-s")


def test_config_refuses_a_misspelled_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "inferd.yaml"
    config.write_text("sever:\n  port: 9000\n")
    assert main(["config", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"inferd: config file {config}: unknown section 'sever'; did you mean 'server'?\n"
    )


def test_serve_refuses_an_empty_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.onnx").write_bytes(b"")
    assert main(["serve", str(tmp_path / "models")]) == 2
    assert capsys.readouterr().err == (
        "inferd: model repository models holds no model: expected <model>/<version>/ folders "
        "holding one of ['model.onnx', 'model.pt', 'model.py', 'model.savedmodel', 'model.ts']; models/model.onnx "
        "is a model file at the repository root: put it in models/<model>/1/model.onnx, or "
        "serve the file itself (allow_empty / --allow-empty serves it anyway)\n"
    )


def test_serve_without_the_default_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "inferd: no model repository: ./models (the default) does not exist; pass REPOSITORY "
        "or set models.repository (INFERENCE_MODELS__REPOSITORY)\n"
    )


def test_serve_an_empty_repository_when_allowed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--allow-empty")
    try:
        server.wait_ready()
    finally:
        assert server.stop() == 0


def broken_repository(root: Path) -> Path:
    make_model(root, "good", ["1"])
    misplaced = make_model(root, "misplaced", ["1"])
    (misplaced / "1" / "model.yaml").write_text("runtime: python\n")
    pickled = root / "pickled" / "1"
    pickled.mkdir(parents=True)
    (pickled / "model.pkl").write_bytes(b"\x80")
    raising = make_model(root, "raising", ["1"])
    (raising / "1" / "model.py").write_text("raise ValueError('no weights here')\n")
    return root


def test_validate_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = broken_repository(tmp_path / "repo")
    assert main(["validate", str(repo)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "good                 1          READY",
        "    input  x: FP32 [-1, 2]",
        "    output x: FP32 [-1, 2]",
        "misplaced            -          FAILED       repo/misplaced/1/model.yaml: model.yaml "
        "belongs in the model folder (repo/misplaced/model.yaml), not in a version folder",
        "pickled              -          FAILED       repo/pickled/1/model.pkl: not a model file "
        "inferd knows; expected one of ['model.onnx', 'model.pt', 'model.py', 'model.savedmodel', 'model.ts']",
        "raising              1          FAILED       ValueError: no weights here",
        "3 problem(s) in 4 model version(s)",
    ]
    assert captured.err == ""


def test_validate_verbose_shows_tracebacks(tmp_path: Path) -> None:
    repo = broken_repository(tmp_path / "repo")
    result = run_cli("validate", str(repo), "--verbose")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raising/1/model.py", line 1, in <module>' in result.stderr


def test_validate_refuses_an_empty_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert "holds no model" in capsys.readouterr().err
    assert main(["validate", str(tmp_path), "--allow-empty"]) == 0
    assert capsys.readouterr().out == "0 problem(s) in 0 model version(s)\n"


def test_keys_new_prints_the_key_once_and_the_line_that_configures_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from inferd.gateway.admission import Gateway
    from inferd.settings import load_settings

    assert main(["keys", "new", "--name", "ci-bot", "--scope", "infer"]) == 0
    lines = capsys.readouterr().out.splitlines()
    key = lines[0].rpartition(": ")[2]
    line = lines[-1]
    assert key.startswith("inferd_") and key not in line
    assert line.startswith("ci-bot:infer:")
    settings = load_settings(None, None, environ={"INFERENCE_SERVER__API_KEYS": line})
    principal = Gateway(settings.server).principal(key, "10.0.0.1")
    assert principal.name == "ci-bot"


def test_serve_refuses_a_bad_key_line_before_loading(example_repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "inferd.yaml"
    config.write_text("server:\n  api_keys: ['ci-bot:infer:inferd_abc']\n")
    result = run_cli("serve", str(example_repo), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (
        "inferd: server.api_keys[0]: the hash must be 64 lower-case hex digits "
        "(a SHA-256, not the key)\n"
    )


COMMANDS = [["serve"], ["config"], ["example"], ["validate"], ["init"], ["keys"], ["keys", "new"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_a_description_and_every_flag_a_help_with_its_default(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    usage, description, *sections = text.split("\n\n")
    assert usage.startswith(f"usage: inferd {' '.join(command)}")
    assert description.strip(), "a description under the usage line"
    options = next(s for s in sections if s.startswith("options:"))
    for entry in re.split(r"\n  (?=-)", options)[1:]:
        flag = entry.split()[0].rstrip(",")
        if flag in ("-h", "--help"):
            continue
        words = " ".join(entry.split())
        assert "default" in words or "required" in words, f"inferd {' '.join(command)} {flag}"


def test_serve_help_shows_each_setting_and_its_default() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--port PORT HTTP port (REST and WebSocket) (setting server.port; default 8080)" in text
    assert "gRPC port; 0 disables gRPC (setting server.grpc_port; default 8081)" in text
    assert "(setting models.allow_empty; default false)" in text
    assert "(setting server.admin_token; default none)" in text
