"""The ``inferd`` command: serve, example, validate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from inferd import __version__
from inferd.errors import InferdError

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
    "max_batch_size": ("performance", "max_batch_size"),
    "batch_timeout_ms": ("performance", "batch_timeout_ms"),
    "timeout": ("performance", "inference_timeout_s"),
    "max_request_size_mb": ("safeguards", "max_request_size_mb"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferd", description="Model inference server.")
    parser.add_argument("--version", action="version", version=f"inferd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve a model repository or a single model file")
    serve.add_argument("repository", nargs="?", type=Path, help="repository folder or model file")
    serve.add_argument("--config", type=Path, help="YAML settings file")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--grpc-port", type=int, help="0 disables gRPC")
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level")
    serve.add_argument("--admin-token", help="bearer token for repository load/unload")
    serve.add_argument("--default-model", help="model used by /predict")
    serve.add_argument("--default-version", help="version or label used by /predict")
    serve.add_argument("--max-batch-size", type=int)
    serve.add_argument("--batch-timeout-ms", type=float)
    serve.add_argument("--timeout", type=float, help="default request deadline in seconds")
    serve.add_argument("--max-request-size-mb", type=float)

    example = commands.add_parser("example", help="write the example model repository")
    example.add_argument("directory", type=Path)

    validate = commands.add_parser("validate", help="check a repository without serving it")
    validate.add_argument("repository", type=Path)
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


def _serve(args: argparse.Namespace) -> int:
    from inferd.server import serve
    from inferd.settings import load_settings

    settings = load_settings(args.config, overrides_from(args))
    if settings.models.repository is None:
        raise InferdError("no model repository: pass REPOSITORY or set INFERENCE_MODEL_PATH")
    if settings.server.workers > 1:
        from inferd.supervisor import Supervisor

        logging.basicConfig(level=settings.server.log_level.upper(), format=LOG_FORMAT)
        return Supervisor(settings).run()
    serve(settings)
    return 0


def _example(args: argparse.Namespace) -> int:
    from inferd.example import build_example

    for path in build_example(args.directory):
        print(f"wrote {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from inferd.core.manager import State
    from inferd.server import build_service
    from inferd.settings import load_settings

    settings = load_settings(None, {"models": {"repository": args.repository}})
    service = build_service(settings)

    async def check() -> int:
        await service.manager.load_all()
        failed = 0
        for row in service.manager.index():
            failed += row.state is State.FAILED
            line = f"{row.model:20} {row.version or '-':10} {row.state.value:12} {row.reason}"
            print(line.rstrip())
            if row.state is State.READY:
                meta = service.model_metadata(row.model, row.version)
                for kind in ("inputs", "outputs"):
                    for t in meta[kind]:
                        print(f"    {kind[:-1]:6} {t['name']}: {t['datatype']} {t['shape']}")
        await service.manager.close()
        return 1 if failed else 0

    return asyncio.run(check())


COMMANDS = {"serve": _serve, "example": _example, "validate": _validate}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InferdError as exc:
        print(f"inferd: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
