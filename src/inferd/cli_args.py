"""The ``inferd`` command line's arguments: every command, and every flag with its help
and default (serve's flags take theirs from the settings)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from inferd import __version__
from inferd.tools.flags import TOOLS

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


def serve_flags(parser: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
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
    serve_flags(serve)

    config = command(
        "config",
        "print the effective settings and where each value came from",
        "Takes the flags of 'inferd serve' and prints every setting, its value and its "
        "source (default, file, env or flag); nothing is started.",
    )
    serve_flags(config)

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
    for add_flags, _ in TOOLS.values():  # predict, models, bench (inferd.tools)
        add_flags(commands)
    return parser
