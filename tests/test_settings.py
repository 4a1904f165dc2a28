import json
from pathlib import Path

import pytest

from inferd.cli import _parser, flag_names, overrides_from
from inferd.errors import ConfigError
from inferd.settings import explain_settings, load_settings


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    path = tmp_path / "inferd.yaml"
    path.write_text(
        "server:\n  port: 9000\n  workers: 2\n"
        "model:\n  repository: /srv/models\n  default_version: '3'\n"
        "performance:\n  max_batch_size: 8\n"
        "safeguards:\n  max_request_size_mb: 4\n  rate_limit:\n    enabled: true\n"
    )
    return path


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.server.port == 8080
    assert settings.server.grpc_port == 8081
    assert settings.server.host == "127.0.0.1"
    assert settings.performance.max_batch_size == 32
    assert settings.safeguards.max_request_bytes == 16 * 1024 * 1024
    assert settings.safeguards.rate_limit.enabled is False


def test_yaml_over_defaults(yaml_file: Path) -> None:
    settings = load_settings(yaml_file, environ={})
    assert settings.server.port == 9000
    assert settings.models.repository == Path("/srv/models")
    assert settings.models.default_version == "3"
    assert settings.performance.max_batch_size == 8
    assert settings.safeguards.rate_limit.enabled is True
    assert settings.server.grpc_port == 8081


def test_env_over_yaml(yaml_file: Path) -> None:
    env = {"INFERENCE_SERVER__PORT": "9100", "INFERENCE_PERFORMANCE__MAX_BATCH_SIZE": "16"}
    settings = load_settings(yaml_file, environ=env)
    assert settings.server.port == 9100
    assert settings.performance.max_batch_size == 16
    assert settings.server.workers == 2  # untouched fields keep the YAML value


@pytest.mark.parametrize(
    ("name", "value", "path", "expected"),
    [
        ("INFERENCE_HOST", "0.0.0.0", ("server", "host"), "0.0.0.0"),
        ("INFERENCE_PORT", "9200", ("server", "port"), 9200),
        ("INFERENCE_WORKERS", "4", ("server", "workers"), 4),
        ("INFERENCE_MODEL_PATH", "/m", ("models", "repository"), Path("/m")),
        ("INFERENCE_MODEL_VERSION", "v2", ("models", "default_version"), "v2"),
        ("INFERENCE_MAX_BATCH_SIZE", "64", ("performance", "max_batch_size"), 64),
        ("INFERENCE_TIMEOUT_SECONDS", "2.5", ("performance", "inference_timeout_s"), 2.5),
        ("INFERENCE_MAX_REQUEST_SIZE_MB", "1", ("safeguards", "max_request_size_mb"), 1.0),
    ],
)
def test_flat_env_names(
    yaml_file: Path, name: str, value: str, path: tuple[str, str], expected: object
) -> None:
    settings = load_settings(yaml_file, environ={name: value})
    assert getattr(getattr(settings, path[0]), path[1]) == expected


def test_flat_rate_limit_name() -> None:
    settings = load_settings(environ={"INFERENCE_RATE_LIMIT_PER_MINUTE": "30"})
    assert settings.safeguards.rate_limit.requests_per_minute == 30


def test_nested_env_beats_flat_env() -> None:
    env = {"INFERENCE_PORT": "9200", "INFERENCE_SERVER__PORT": "9300"}
    assert load_settings(environ=env).server.port == 9300


def test_cli_over_env_over_yaml(yaml_file: Path) -> None:
    args = _parser().parse_args(
        ["serve", "/cli/models", "--config", str(yaml_file), "--port", "7000"]
    )
    env = {"INFERENCE_PORT": "9100", "INFERENCE_MODEL_PATH": "/env/models"}
    settings = load_settings(args.config, overrides_from(args), environ=env)
    assert settings.server.port == 7000
    assert settings.models.repository == Path("/cli/models")
    assert settings.server.workers == 2


def test_cli_flags_left_out_do_not_override(yaml_file: Path) -> None:
    args = _parser().parse_args(["serve", "--config", str(yaml_file)])
    settings = load_settings(args.config, overrides_from(args), environ={})
    assert settings.server.port == 9000


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"INFERENCE_PORT": "not-a-port"}, "server.port"),
        ({"INFERENCE_PORT": "70000"}, "server.port"),
        ({"INFERENCE_WORKERS": "0"}, "server.workers"),
        ({"INFERENCE_MAX_REQUEST_SIZE_MB": "-1"}, "safeguards.max_request_size_mb"),
        ({"INFERENCE_SERVER__LOG_LEVEL": "loud"}, "server.log_level"),
        (
            {"INFERENCE_PERFORMANCE__GIL_SWITCH_INTERVAL_US": "0"},
            "performance.gil_switch_interval_us",
        ),
        ({"INFERENCE_PERFORMANCE__GC_THRESHOLD": "0"}, "performance.gc_threshold"),
        ({"INFERENCE_STORAGE__REDIS_URI": "memcached://x:1"}, "storage.redis_uri"),
        ({"INFERENCE_STORAGE__TIMEOUT_MS": "0"}, "storage.timeout_ms"),
        ({"INFERENCE_MODELS__POLL_INTERVAL_S": "-1"}, "models.poll_interval_s"),
    ],
)
def test_invalid_values_name_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(environ=env)


def test_unknown_yaml_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  prot: 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(path, environ={})


def test_broken_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_settings(path, environ={})


def test_default_repository_is_models_in_the_working_directory() -> None:
    assert load_settings(environ={}).models.repository == Path("models")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sever:\n  port: 1\n", "unknown section 'sever'; did you mean 'server'?"),
        ("server:\n  prot: 1\n", "unknown setting 'server.prot'; did you mean 'port'?"),
        (
            "safeguards:\n  rate_limit:\n    enabld: true\n",
            "unknown setting 'safeguards.rate_limit.enabld'; did you mean 'enabled'?",
        ),
        (
            "model:\n  repository: a\nmodels:\n  repository: b\n",
            "section 'models' is given twice ('models')",
        ),
    ],
)
def test_unknown_yaml_keys_suggest_the_closest(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "inferd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.message == f"config file {path}: {message}"


def test_broken_yaml_quotes_none_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  admin_token: 'hunter2\n  port: [\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.message == f"config file {path}: not valid YAML (line 4, column 1)"


def test_env_error_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"INFERENCE_SERVER__PORT": "abc"})
    assert caught.value.message.startswith(
        "invalid settings: INFERENCE_SERVER__PORT='abc' (server.port): Input should be a valid "
        "integer"
    )


def test_flat_env_error_names_the_flat_variable() -> None:
    with pytest.raises(ConfigError, match=r"^invalid settings: INFERENCE_WORKERS='0' "):
        load_settings(environ={"INFERENCE_WORKERS": "0"})


@pytest.mark.parametrize(
    ("name", "suggested"),
    [
        ("INFERENCE_SERVR__PORT", "INFERENCE_SERVER__PORT"),
        ("INFERENCE_SAFEGUARDS__RATE_LIMIT__ENABLE", "INFERENCE_SAFEGUARDS__RATE_LIMIT__ENABLED"),
        ("INFERENCE_MODEL_PAHT", "INFERENCE_MODEL_PATH"),
    ],
)
def test_env_variable_naming_no_setting_is_refused(name: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={name: "1"})
    assert caught.value.message == (
        f"environment variable {name} names no setting; did you mean '{suggested}'?"
    )


def test_env_outside_the_prefix_is_not_read() -> None:
    assert load_settings(environ={"INFERENCEX": "1", "PORT": "1"}).server.port == 8080


def test_a_section_from_the_environment_as_json() -> None:
    env = {"INFERENCE_SAFEGUARDS__RATE_LIMIT": '{"enabled": true, "per_model": true}'}
    limit = load_settings(environ=env).safeguards.rate_limit
    assert (limit.enabled, limit.per_model) == (True, True)


def test_flag_error_names_the_flag() -> None:
    args = _parser().parse_args(["serve", "--port", "70000"])
    with pytest.raises(ConfigError) as caught:
        load_settings(None, overrides_from(args), environ={}, override_names=flag_names())
    assert caught.value.message == (
        "invalid settings: --port 70000 (server.port): Input should be less than or equal to 65535"
    )


def test_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "inferd.yaml"
    path.write_text("server:\n  port: 70000\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.message == (
        "invalid settings: server.port: Input should be less than or equal to 65535 "
        f"(got 70000, file {path})"
    )


def test_sources_of_each_value(yaml_file: Path) -> None:
    args = _parser().parse_args(
        ["serve", "/cli/models", "--config", str(yaml_file), "--max-batch-size", "4"]
    )
    env = {"INFERENCE_PORT": "9100", "INFERENCE_SERVER__WORKERS": "3"}
    loaded = explain_settings(
        args.config, overrides_from(args), environ=env, override_names=flag_names()
    )
    assert loaded.source(("server", "port")) == "env INFERENCE_PORT"
    assert loaded.source(("server", "workers")) == "env INFERENCE_SERVER__WORKERS"
    assert loaded.source(("models", "default_version")) == f"file {yaml_file}"
    assert loaded.source(("models", "repository")) == "argument REPOSITORY"
    assert loaded.source(("performance", "max_batch_size")) == "flag --max-batch-size"
    assert loaded.source(("server", "host")) == "default"


def test_limits_from_yaml_and_env(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(
        "limits:\n  http:\n    max_header_bytes: 8192\n    header_timeout_s: 2.5\n"
        "  grpc:\n    max_concurrent_rpcs: 64\n  models:\n    max_batch_time_s: 5\n"
    )
    env = {"INFERENCE_LIMITS__HTTP__MAX_CONNECTIONS": "100"}
    limits = load_settings(path, environ=env).limits
    assert limits.http.max_header_bytes == 8192
    assert limits.http.header_timeout_s == 2.5
    assert limits.http.max_connections == 100
    assert limits.http.max_headers == 100  # left out: the default
    assert limits.grpc.max_concurrent_rpcs == 64
    assert limits.models.max_batch_time_s == 5.0


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"INFERENCE_LIMITS__HTTP__MAX_HEADER_BYTES": "100"}, "limits.http.max_header_bytes"),
        ({"INFERENCE_LIMITS__HTTP__BODY_TIMEOUT_S": "0"}, "limits.http.body_timeout_s"),
        ({"INFERENCE_LIMITS__GRPC__MAX_HEALTH_WATCHERS": "0"}, "limits.grpc.max_health_watchers"),
        ({"INFERENCE_LIMITS__MODELS__MAX_BATCH_TIME_S": "-1"}, "limits.models.max_batch_time_s"),
    ],
)
def test_invalid_limits_name_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_settings(environ=env)


def test_unknown_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("limits:\n  http:\n    max_header: 1\n")
    with pytest.raises(ConfigError, match=r"limits\.http\.max_header"):
        load_settings(path, environ={})


def test_redis_uri_from_the_environment() -> None:
    settings = load_settings(environ={"INFERENCE_STORAGE__REDIS_URI": "redis://cache:6379/1"})
    assert settings.storage.redis_uri == "redis://cache:6379/1"
    assert load_settings(environ={}).storage.redis_uri is None


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    env = {"INFERENCE_SERVER__TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}
    with pytest.raises(ConfigError, match=r"'proxy\.local' is not an IP address or network"):
        load_settings(environ=env)
    env = {"INFERENCE_SERVER__TRUSTED_PROXIES": "10.0.0.0/8, ::1"}
    assert load_settings(environ=env).server.trusted_proxies == ["10.0.0.0/8", "::1"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CORS_ORIGINS", '["http://app.example"]', ["http://app.example"]),
        ("CORS_ORIGINS", ' ["http://a.example", "https://b.example:8443"]', None),
        ("CORS_ORIGINS", "http://a.example, https://b.example:8443", None),
        ("CORS_ORIGINS", "*", ["*"]),
        ("CORS_ORIGINS", "http://[::1]:3000", ["http://[::1]:3000"]),
        ("TRUSTED_PROXIES", '["10.0.0.0/8", "::1"]', ["10.0.0.0/8", "::1"]),
        ("TRUSTED_PROXIES", "[]", []),
    ],
)
def test_list_settings_from_the_environment_take_the_json_form(
    variable: str, value: str, expected: list[str] | None
) -> None:
    settings = load_settings(environ={f"INFERENCE_SERVER__{variable}": value})
    got = getattr(settings.server, variable.lower())
    assert got == (["http://a.example", "https://b.example:8443"] if expected is None else expected)


def test_api_keys_from_the_environment_take_the_json_form() -> None:
    line = "ci-bot:infer:" + "0" * 64
    settings = load_settings(environ={"INFERENCE_SERVER__API_KEYS": json.dumps([line, line])})
    assert settings.server.api_keys == [line, line]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "CORS_ORIGINS",
            '["http://app.example/"]',
            "INFERENCE_SERVER__CORS_ORIGINS='[\"http://app.example/\"]' (server.cors_origins): "
            "Value error, 'http://app.example/' is not an origin: expected "
            "scheme://host[:port] (no path, no trailing '/'), or *",
        ),
        (
            "CORS_ORIGINS",
            "app.example",
            "INFERENCE_SERVER__CORS_ORIGINS='app.example' (server.cors_origins): Value error, "
            "'app.example' is not an origin",
        ),
        (
            "CORS_ORIGINS",
            '["http://a.example",',
            "INFERENCE_SERVER__CORS_ORIGINS='[\"http://a.example\",' (server.cors_origins): "
            "Value error, not a JSON list (write entries separated by commas)",
        ),
        (
            "TRUSTED_PROXIES",
            '{"a": 1}',
            "INFERENCE_SERVER__TRUSTED_PROXIES='{\"a\": 1}' (server.trusted_proxies): Value "
            "error, expected a JSON list of strings",
        ),
        (
            "TRUSTED_PROXIES",
            "[10]",
            "INFERENCE_SERVER__TRUSTED_PROXIES='[10]' (server.trusted_proxies): Value error, "
            "expected a JSON list of strings",
        ),
        (
            "TRUSTED_PROXIES",
            '["10.0.0.0/8", "proxy.local"]',
            "INFERENCE_SERVER__TRUSTED_PROXIES=['10.0.0.0/8', 'proxy.local'] "
            "(server.trusted_proxies): Value error, 'proxy.local' is not an IP address or network",
        ),
    ],
)
def test_a_list_entry_that_is_not_what_the_setting_holds_names_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={f"INFERENCE_SERVER__{variable}": value})
    assert message in str(refused.value)


README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_settings_block_loads_as_printed_and_holds_the_defaults(
    tmp_path: Path,
) -> None:
    text = README.read_text()
    block = text.split("Every setting and its default:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "every.yaml"
    path.write_text(block)
    assert load_settings(path, environ={}) == load_settings(environ={})


def test_access_log_off_unquoted_in_yaml_is_off(tmp_path: Path) -> None:
    path = tmp_path / "inferd.yaml"
    path.write_text("server:\n  access_log: off\n")
    assert load_settings(path, environ={}).server.access_log == "off"
    path.write_text("server:\n  access_log: on\n")
    with pytest.raises(ConfigError, match="access_log"):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        (
            "server:\n  port: 9000\n  host: 0.0.0.0\n  port: 9001\n",
            "'port' is given twice (lines 2 and 4)",
        ),
        (
            "server: {port: 1}\nmodels: {}\nserver: {port: 2}\n",
            "'server' is given twice (lines 1 and 3)",
        ),
    ],
)
def test_a_key_given_twice_in_the_settings_file_is_an_error_naming_the_lines(
    tmp_path: Path, text: str, lines: str
) -> None:
    path = tmp_path / "inferd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_settings(path, environ={})
    assert refused.value.message == f"config file {path}: key {lines}"
