"""The ``inferd`` command: serve, config, example, validate, init, keys."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from inferd.cli_args import SERVE_FLAGS
from inferd.cli_args import build_parser as _parser
from inferd.errors import ConfigError, InferdError
from inferd.ports import PortInUse
from inferd.tools.flags import TOOLS

if TYPE_CHECKING:
    from inferd.settings import LoadedSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Settings whose value ``inferd config`` does not print.
SECRETS: Final = frozenset({("server", "admin_token")})


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
    from inferd.core.store.repository import Repository

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
    from inferd.core.node import build_node
    from inferd.core.store.loaded import State
    from inferd.settings import explain_settings

    loaded = explain_settings(
        None,
        {"models": {"repository": args.repository, "allow_empty": args.allow_empty}},
        override_names=flag_names(),
    )
    check_repository(loaded)
    node = build_node(loaded.settings)

    async def check() -> int:
        await node.manager.load_all()
        rows = node.manager.index()
        failed = 0
        for row in rows:
            failed += row.state is State.FAILED
            line = f"{row.model:20} {row.version or '-':10} {row.state.value:12} {row.reason}"
            print(line.rstrip())
            if row.state is State.READY:
                meta = node.catalog.model_metadata(row.model, row.version)
                for kind, specs in (("input", meta.inputs), ("output", meta.outputs)):
                    for t in specs:
                        print(f"    {kind:6} {t.name}: {t.datatype} {list(t.shape)}")
        await node.manager.close()
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
