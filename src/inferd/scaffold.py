"""``inferd init``: a new model folder with a model.yaml and a model file that serves as is."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Final

from inferd.core.store.repository import check_name
from inferd.errors import ConfigError
from inferd.example import (
    TINY,
    mlp_weights,
    tensor_yaml,
    write_onnx,
    write_savedmodel,
    write_starter,
    write_torchscript,
)

HEADER: Final = "# {name}: what inferd reads about the model (README, section model.yaml).\n"


def _python(folder: Path) -> Path:
    write_starter("python_model", folder / "1" / "model.py")
    return folder / "1" / "model.py"


def _onnx(folder: Path) -> Path:
    write_onnx(mlp_weights(TINY), folder / "1" / "model.onnx")
    return folder / "1" / "model.onnx"


def _torchscript(folder: Path) -> Path:
    write_torchscript(mlp_weights(TINY), folder / "1" / "model.pt")
    return folder / "1" / "model.pt"


def _tensorflow(folder: Path) -> Path:
    write_savedmodel(mlp_weights(TINY), folder / "1" / "model.savedmodel")
    return folder / "1" / "model.savedmodel"


#: Runtime -> (writes the version-1 artifact, layer sizes in and out, model.yaml's extra keys).
SCAFFOLDS: Final[dict[str, tuple[Callable[[Path], Path], tuple[int, ...], dict[str, object]]]] = {
    "python": (_python, (4, 1), {"parameters": {"scale": 1.0}}),
    "onnx": (_onnx, TINY, {}),
    "torchscript": (_torchscript, TINY, {}),
    "tensorflow": (_tensorflow, TINY, {}),
}
#: Runtime -> the package that writes its artifact, and the extra that installs it.
WRITERS: Final = {
    "onnx": ("onnx", "onnx"),
    "torchscript": ("torch", "torch"),
    "tensorflow": ("tensorflow", "tensorflow"),
}


def scaffold(root: Path, name: str, runtime: str) -> list[Path]:
    """Write ``root/name/model.yaml`` and ``root/name/1/model.*``; returns both paths.

    The model: a 4 -> 64 -> 2 MLP (ONNX, TorchScript, a TensorFlow SavedModel) or, for
    Python, the sum of the four inputs times ``parameters.scale``, to be replaced by the
    real one.
    """
    check_name("model", name)
    if runtime not in SCAFFOLDS:
        raise ConfigError(f"unknown runtime {runtime!r}; expected one of {sorted(SCAFFOLDS)}")
    if runtime in WRITERS and importlib.util.find_spec(WRITERS[runtime][0]) is None:
        package, needs = WRITERS[runtime]
        raise ConfigError(
            f"a {runtime} model is written with {package}, which is not installed "
            f"(pip install 'inferd[{needs}]')"
        )
    folder = root / name
    if folder.exists():
        raise ConfigError(f"{folder} already exists; choose another name or --dir")
    write, sizes, extra = SCAFFOLDS[runtime]
    artifact = write(folder)
    config = folder / "model.yaml"
    config.write_text(HEADER.format(name=name) + tensor_yaml(sizes, runtime, **extra))
    return [config, artifact]
