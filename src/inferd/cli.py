"""The ``inferd`` command: serve, config, example, validate, init, keys; and the client's
predict, models and bench (``inferd.tools``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inferd import __version__
from inferd.errors import ConfigError, InferdError
from inferd.ports import PortInUse
from inferd.tools.flags import TOOLS

if TYPE_CHECKING:
    from inferd.settings import LoadedSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Flag -> settings path. Only flags the user gave become overrides.
SERVE_FLAGS: dict[str, tuple[str, ...]] = {
    "host": ("server", "host"),
    "port": ("server", "port"),
    "grpc_port": ("server", "grpc_port"),
    "workers": ("server", "workers"),
    "log_level": ("server", "log_level"),
    "admin_token": ("server", "admin_token"),
    "default_model": ("models", "default_model"),
    "default_version": ("models", "default_version"),
    "allow_empty": ("models", "allow_empty"),
    "poll_interval_s": ("models", "poll_interval_s"),
    "max_batch_size": ("performance", "max_batch_size"),
    "batch_timeout_ms": ("performance", "batch_timeout_ms"),
    "timeout": ("performance", "inference_timeout_s"),
    "max_request_size_mb": ("safeguards", "max_request_size_mb"),
}
#: ``inferd init --runtime`` choices (see inferd.scaffold).
RUNTIME_CHOICES: Final = ("python", "onnx", "torchscript", "tensorflow")
#: Settings whose value ``inferd config`` does not print.
SECRETS: Final = frozenset({("server", "admin_token")})


#: Flag -> (type, metavar); flags not listed take a string.
_FLAG_TYPES: Final[dict[str, tuple[type, str]]] = {
    "port": (int, "PORT"),
    "grpc_port": (int, "PORT"),
    "workers": (int, "N"),
    "poll_interval_s": (float, "SECONDS"),
    "max_batch_size": (int, "ROWS"),
    "batch_timeout_ms": (float, "MS"),
    "timeout": (float, "SECONDS"),
    "max_request_size_mb": (float, "MB"),
    "host": (str, "ADDRESS"),
    "log_level": (str, "LEVEL"),
    "admin_token": (str, "KEY"),
    "default_model": (str, "MODEL"),
    "default_version": (str, "VERSION"),
}


def _setting_help(path: tuple[str, ...]) -> str:
    """The setting's description and its default (the settings' own), for ``--help``."""
    from inferd.settings import Settings

    section = Settings.model_fields[path[0]].annotation
    assert isinstance(section, type) and hasattr(section, "model_fields")
    field = section.model_fields[path[1]]
    default = field.get_default(call_default_factory=True)
    shown = "none" if default is None else str(default).lower() if default is False else default
    # argparse formats help with %: a literal one is written twice.
    text = (field.description or "").rstrip(".").replace("%", "%%")
    return f"{text} (setting {'.'.join(path)}; default {shown})"


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "repository",
        nargs="?",
        type=Path,
        help="repository folder or model file (setting models.repository; default ./models)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML settings file; flags override it, and the environment (INFERENCE_*) "
        "sits between the two (default: none)",
    )
    for flag, path in SERVE_FLAGS.items():
        name = "--" + flag.replace("_", "-")
        if flag == "allow_empty":
            parser.add_argument(name, action="store_true", default=None, help=_setting_help(path))
            continue
        kind, metavar = _FLAG_TYPES.get(flag, (str, flag.upper()))
        parser.add_argument(name, type=kind, metavar=metavar, help=_setting_help(path))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferd", description="Model inference server.")
    parser.add_argument("--version", action="version", version=f"inferd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}. {description}".strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    serve = command(
        "serve",
        "serve a model repository or a single model file",
        "REST and WebSocket on --port, gRPC on --grpc-port; OpenAPI at /docs. Settings "
        "come from flags, then INFERENCE_* variables, then --config, then the defaults "
        "shown ('inferd config' prints where each value came from).",
    )
    _serve_flags(serve)

    config = command(
        "config",
        "print the effective settings and where each value came from",
        "Takes the flags of 'inferd serve' and prints every setting, its value and its "
        "source (default, file, env or flag); nothing is started.",
    )
    _serve_flags(config)

    example = command(
        "example",
        "write the example model repository",
        "wide (ONNX) and the Python models (sentiment, words) always; tiny as TorchScript "
        "when torch is installed, else as ONNX; tiny-tf when TensorFlow is installed.",
    )
    example.add_argument("directory", type=Path, help="folder to write it in (made if missing)")
    example.add_argument(
        "--text",
        action="store_true",
        help="also build minilm, all-MiniLM-L6-v2 sentence embeddings (needs inferd[text]; "
        "default: off)",
    )

    validate = command(
        "validate",
        "check a repository without serving it",
        "Loads every model as 'inferd serve' would, prints each version's state and tensors, "
        "and exits 1 when any failed.",
    )
    validate.add_argument("repository", type=Path, help="repository folder or model file")
    validate.add_argument(
        "--allow-empty",
        action="store_true",
        help="a repository with no model is no problem (default: it is one)",
    )
    validate.add_argument(
        "--verbose", action="store_true", help="log, with tracebacks (default: off)"
    )

    init = command("init", "write a new model folder that serves as is")
    init.add_argument("name", help="model name (the folder's name)")
    init.add_argument(
        "--runtime",
        choices=list(RUNTIME_CHOICES),
        default="python",
        help="what the model runs on (default python)",
    )
    init.add_argument("--dir", type=Path, default=Path("."), help="repository folder (default .)")

    keys = command("keys", "API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_commands.add_parser(
        "new",
        help="make a key: prints it once, and its config line",
        description="Make a key: prints it once, and the NAME:SCOPE:SHA256 line that "
        "configures it (server.api_keys); the server keeps only the hash.",
    )
    new.add_argument(
        "--name", required=True, help="the key's name (in logs and rate limits; required)"
    )
    new.add_argument(
        "--scope",
        choices=["infer", "admin"],
        required=True,
        help="infer: inference, metadata, streams; admin: also the control API (required)",
    )
    for add_flags, _ in TOOLS.values():
        add_flags(commands)
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for flag, path in SERVE_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.setdefault(path[0], {})[path[1]] = value
    if getattr(args, "repository", None) is not None:
        overrides.setdefault("models", {})["repository"] = args.repository
    return overrides


def flag_names() -> dict[tuple[str, ...], str]:
    """Settings path -> the flag (or argument) that sets it, for messages."""
    names = {path: "--" + flag.replace("_", "-") for flag, path in SERVE_FLAGS.items()}
    names[("models", "repository")] = "REPOSITORY"
    return names


def _load(args: argparse.Namespace) -> LoadedSettings:
    from inferd.settings import explain_settings

    return explain_settings(args.config, overrides_from(args), override_names=flag_names())


def check_repository(loaded: LoadedSettings) -> None:
    """Refuse to start without a repository, or with an empty one unless allowed."""
    from inferd.core.repository import Repository

    settings = loaded.settings
    path = settings.models.repository
    source = loaded.source(("models", "repository"))
    if path is None:
        raise ConfigError("no model repository: pass REPOSITORY or set models.repository")
    if source == "default" and not path.exists():
        raise ConfigError(
            f"no model repository: ./{path} (the default) does not exist; pass REPOSITORY "
            "or set models.repository (INFERENCE_MODELS__REPOSITORY)"
        )
    repository = Repository(path)
    if not settings.models.allow_empty:
        repository.require_models()


def _serve(args: argparse.Namespace) -> int:
    from inferd.gateway.admission import ring_from
    from inferd.server import serve, tls_options

    loaded = _load(args)
    check_repository(loaded)
    settings = loaded.settings
    ring_from(settings.server)  # a bad key line or TLS file fails here, before any worker
    tls_options(settings.server)
    if settings.server.workers > 1:
        from inferd.supervisor import Supervisor

        logging.basicConfig(level=settings.server.log_level.upper(), format=LOG_FORMAT)
        return Supervisor(settings).run()
    serve(settings)
    return 0


def _config(args: argparse.Namespace) -> int:
    from inferd.settings_sources import leaves

    loaded = _load(args)
    values = loaded.settings.model_dump()
    rows = []
    for path in leaves(type(loaded.settings), values):
        value: Any = values
        for key in path:
            value = value[key]
        shown = ("(set)" if value is not None else "null") if path in SECRETS else _show(value)
        rows.append((".".join(path), shown, loaded.source(path)))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, shown, source in rows:
        print(f"{name:{width}}  {shown:{value_width}}  {source}")
    return 0


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _example(args: argparse.Namespace) -> int:
    from inferd.example import build_example, tensorflow_installed, torch_installed

    with_tensorflow, with_torch = tensorflow_installed(), torch_installed()
    if not with_torch:
        print("tiny as ONNX: torch is not installed (pip install 'inferd[torch]' for TorchScript)")
    if not with_tensorflow:
        print("skipping tiny-tf: TensorFlow is not installed (pip install 'inferd[tensorflow]')")
    written = build_example(args.directory, with_tensorflow, with_torch)
    if args.text:
        from inferd.text.build import build_text_example

        written += build_text_example(args.directory)
    for path in written:
        print(f"wrote {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format=LOG_FORMAT)
    quiet = logging.getLogger("inferd")
    level = quiet.level
    if not args.verbose:  # each problem is printed once below; the log would repeat it
        quiet.setLevel(logging.CRITICAL)
    try:
        return _check(args)
    finally:
        quiet.setLevel(level)


def _check(args: argparse.Namespace) -> int:
    from inferd.core.manager import State
    from inferd.server import build_service
    from inferd.settings import explain_settings

    loaded = explain_settings(
        None,
        {"models": {"repository": args.repository, "allow_empty": args.allow_empty}},
        override_names=flag_names(),
    )
    check_repository(loaded)
    service = build_service(loaded.settings)

    async def check() -> int:
        await service.manager.load_all()
        rows = service.manager.index()
        failed = 0
        for row in rows:
            failed += row.state is State.FAILED
            line = f"{row.model:20} {row.version or '-':10} {row.state.value:12} {row.reason}"
            print(line.rstrip())
            if row.state is State.READY:
                meta = service.model_metadata(row.model, row.version)
                for kind in ("inputs", "outputs"):
                    for t in meta[kind]:
                        print(f"    {kind[:-1]:6} {t['name']}: {t['datatype']} {t['shape']}")
        await service.manager.close()
        print(f"{failed} problem(s) in {len(rows)} model version(s)")
        return 1 if failed else 0

    return asyncio.run(check())


def _init(args: argparse.Namespace) -> int:
    from inferd.scaffold import scaffold

    for path in scaffold(args.dir, args.name, args.runtime):
        print(f"wrote {path}")
    print(f"next: inferd validate {args.dir}; inferd serve {args.dir}")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from inferd.gateway.keys import Scope, new_key

    key, entry = new_key(args.name, Scope(args.scope))
    print(f"key (shown once; give it to the client): {key}")
    print("configure it with this line in server.api_keys (or a line of server.api_keys_file):")
    print(entry.line())
    return 0


def _tool(module: str) -> Callable[[argparse.Namespace], int]:
    """A client command's ``run``, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        code: int = importlib.import_module(module).run(args)
        return code

    return run


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    **{name: _tool(module) for name, (_, module) in TOOLS.items()},
    "serve": _serve,
    "config": _config,
    "example": _example,
    "validate": _validate,
    "init": _init,
    "keys": _keys,
}

#: Exit status by error class (the first that matches); any other InferdError exits 2.
EXIT_STATUS: dict[type[InferdError], int] = {PortInUse: 1}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InferdError as exc:
        print(f"inferd: {exc.message}", file=sys.stderr)
        return next((code for kind, code in EXIT_STATUS.items() if isinstance(exc, kind)), 2)


if __name__ == "__main__":
    sys.exit(main())
