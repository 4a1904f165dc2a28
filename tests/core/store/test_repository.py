from pathlib import Path

import pytest

from inferd.core.store.repository import Repository, check_name, natural_key
from inferd.errors import ConfigError, InvalidArgument, NotFound

MODEL_PY = "class Model:\n    def predict(self, inputs):\n        return inputs\n"
YAML = (
    "runtime: python\n"
    "inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
    "outputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
)


def make_model(root: Path, name: str, versions: list[str], extra_yaml: str = "") -> Path:
    folder = root / name
    for version in versions:
        (folder / version).mkdir(parents=True)
        (folder / version / "model.py").write_text(MODEL_PY)
    (folder / "model.yaml").write_text(YAML + extra_yaml)
    return folder


@pytest.mark.parametrize("name", ["tiny", "v1.2.0", "1", "model_a-b.c", "A" * 128])
def test_safe_names(name: str) -> None:
    assert check_name("model", name) == name


@pytest.mark.parametrize(
    "name", ["", "..", "../etc", "a/b", "a\\b", ".hidden", "-x", "a..b", "A" * 129, "a b", "é"]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="not allowed"):
        check_name("model", name)


def test_natural_order() -> None:
    names = ["v1.10.0", "2", "v1.9.0", "10", "1", "v1.2.0"]
    assert sorted(names, key=natural_key) == ["1", "2", "10", "v1.2.0", "v1.9.0", "v1.10.0"]


def test_latest_is_highest_by_natural_order(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1", "2", "10"])
    entry = Repository(tmp_path).read("m")
    assert [v.name for v in entry.versions] == ["1", "2", "10"]
    assert [v.name for v in entry.served_versions()] == ["10"]


@pytest.mark.parametrize(
    ("policy", "served"),
    [
        ("version_policy: {latest: 2}\n", ["2", "10"]),
        ("version_policy: {all: true}\n", ["1", "2", "10"]),
        ("version_policy: {specific: ['1', '10']}\n", ["1", "10"]),
    ],
)
def test_version_policies(tmp_path: Path, policy: str, served: list[str]) -> None:
    make_model(tmp_path, "m", ["1", "2", "10"], policy)
    assert [v.name for v in Repository(tmp_path).read("m").served_versions()] == served


def test_specific_policy_naming_a_missing_version(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1"], "version_policy: {specific: ['7']}\n")
    with pytest.raises(ConfigError, match="missing versions"):
        Repository(tmp_path).read("m").served_versions()


def test_two_policies_are_refused(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1"], "version_policy: {latest: 1, all: true}\n")
    with pytest.raises(ConfigError, match="version_policy"):
        Repository(tmp_path).read("m")


def test_unknown_model_yaml_field_names_the_field(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1"], "max_btch_size: 3\n")
    with pytest.raises(ConfigError, match="max_btch_size"):
        Repository(tmp_path).read("m")


def test_bad_device_is_refused(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1"], "device: tpu\n")
    with pytest.raises(ConfigError, match="device"):
        Repository(tmp_path).read("m")


def test_runtime_from_extension(example_repo: Path) -> None:
    repo = Repository(example_repo)
    assert repo.model_names() == ["sentiment", "tiny", "tiny-tf", "wide", "words"]
    assert repo.read("tiny").versions[0].runtime == "torchscript"
    assert repo.read("wide").versions[0].runtime == "onnx"
    assert repo.read("sentiment").versions[0].runtime == "python"
    assert repo.read("words").versions[0].runtime == "python"
    tiny_tf = repo.read("tiny-tf").versions[0]
    assert (tiny_tf.runtime, tiny_tf.artifact.name) == ("tensorflow", "model.savedmodel")


def test_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        Repository(tmp_path).read("nope")


def test_unsafe_folders_are_skipped(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1"])
    (tmp_path / "m" / ".tmp").mkdir()
    (tmp_path / ".git").mkdir()
    repo = Repository(tmp_path)
    assert repo.model_names() == ["m"]
    assert [v.name for v in repo.read("m").versions] == ["1"]


def test_symlink_leaving_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_model(outside, "evil", ["1"])
    root = tmp_path / "repo"
    root.mkdir()
    (root / "evil").symlink_to(outside / "evil")
    with pytest.raises(InvalidArgument, match="outside the model repository"):
        Repository(root).read("evil")


def test_version_symlink_leaving_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make_model(outside, "evil", ["1"])
    root = tmp_path / "repo"
    make_model(root, "m", ["1"])
    (root / "m" / "2").symlink_to(outside / "evil" / "1")
    with pytest.raises(InvalidArgument, match="outside the model repository"):
        Repository(root).read("m")


def test_folder_without_artifacts(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"m/1: empty version folder"):
        Repository(tmp_path).read("m")


def test_single_file_is_a_repository(example_repo: Path) -> None:
    repo = Repository(example_repo / "wide" / "1" / "model.onnx")
    assert repo.model_names() == ["model"]
    entry = repo.read("model")
    assert [v.name for v in entry.versions] == ["1"]
    assert entry.versions[0].runtime == "onnx"
    with pytest.raises(NotFound):
        repo.read("other")


def test_missing_repository() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Repository(Path("/nonexistent/models"))


def test_model_yaml_in_a_version_folder_is_refused(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "repo", "m", ["1"])
    (folder / "1" / "model.yaml").write_text("runtime: python\n")
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        "repo/m/1/model.yaml: model.yaml belongs in the model folder (repo/m/model.yaml), "
        "not in a version folder"
    )


def test_unknown_model_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "repo" / "m" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "1" / "notes.txt").write_text("")
    (tmp_path / "repo" / "m" / "1" / "model.pth").write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        "repo/m/1/model.pth: not a model file inferd knows; expected one of "
        "['model.onnx', 'model.pt', 'model.py', 'model.savedmodel', 'model.ts']"
    )


@pytest.mark.parametrize(
    "found", ["classifier.onnx", "resnet.pt", "scorer.py", "exported.savedmodel"]
)
def test_a_model_file_of_another_name_is_to_be_renamed(tmp_path: Path, found: str) -> None:
    (tmp_path / "repo" / "m" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "1" / "README.txt").write_text("")
    (tmp_path / "repo" / "m" / "1" / found).write_bytes(b"")
    wanted = "model." + found.rpartition(".")[2]
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        f"repo/m/1/{found}: a version's model file is named {wanted}; rename {found} to {wanted}"
    )


def test_single_file_of_unknown_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "model.h5").read("model")
    assert caught.value.message == (
        "model.h5: not a model file inferd knows; expected a file ending in one of "
        "['.onnx', '.pt', '.ts'], or a SavedModel folder ending in .savedmodel"
    )


def test_model_file_outside_a_version_folder(tmp_path: Path) -> None:
    (tmp_path / "repo" / "m").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        "repo/m/model.onnx: model files go in a version folder (repo/m/1/model.onnx)"
    )


def test_saved_model_outside_a_version_folder(tmp_path: Path) -> None:
    (tmp_path / "repo" / "m" / "model.savedmodel" / "variables").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "model.savedmodel" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        "repo/m/model.savedmodel: model files go in a version folder (repo/m/1/model.savedmodel)"
    )


def test_empty_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model repository \S+ holds no model: expected"):
        Repository(tmp_path).require_models()
    make_model(tmp_path, "m", ["1"])
    assert Repository(tmp_path).require_models() == ["m"]


SECRET = "password: hunter2\n"


def test_model_yaml_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(SECRET)
    folder = make_model(tmp_path / "repo", "m", ["1"])
    (folder / "model.yaml").unlink()
    (folder / "model.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(InvalidArgument) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        "repo/m/model.yaml resolves outside the model repository; refused"
    )


def test_artifact_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text(MODEL_PY)
    folder = make_model(tmp_path / "repo", "m", ["1"])
    (folder / "1" / "model.py").unlink()
    (folder / "1" / "model.py").symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(InvalidArgument) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == (
        "repo/m/1/model.py resolves outside the model repository; refused"
    )


def test_broken_model_yaml_quotes_none_of_it(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "repo", "m", ["1"])
    (folder / "model.yaml").write_text("runtime: python\ntoken: 'hunter2\ninputs: [\n")
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == "repo/m/model.yaml: not valid YAML (line 4, column 1)"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("max_batch_sise: 4\n", "unknown key 'max_batch_sise'; did you mean 'max_batch_size'?"),
        (
            "batching: {max_queue_delay: 2}\n",
            "unknown key 'batching.max_queue_delay'; did you mean 'max_queue_delay_ms'?",
        ),
    ],
)
def test_unknown_model_yaml_key_suggests_the_closest(
    tmp_path: Path, extra: str, message: str
) -> None:
    make_model(tmp_path / "repo", "m", ["1"], extra)
    with pytest.raises(ConfigError) as caught:
        Repository(tmp_path / "repo").read("m")
    assert caught.value.message == f"repo/m/model.yaml: {message}"


def test_unknown_tensor_key_suggests_the_closest(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "repo", "m", ["1"])
    (folder / "model.yaml").write_text(
        "runtime: python\ninputs: [{nmae: x, datatype: FP32, shape: [-1, 2]}]\n"
    )
    with pytest.raises(ConfigError, match=r"unknown key 'inputs\.0\.nmae'; did you mean 'name'\?"):
        Repository(tmp_path / "repo").read("m")


def test_a_key_given_twice_in_model_yaml_is_an_error_naming_the_lines(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_text("class Model:\n    def predict(self, x): ...\n")
    (tmp_path / "m" / "model.yaml").write_text(
        "runtime: python\nparameters:\n  scale: 2\n  bias: 1\n  scale: 3\n"
    )
    with pytest.raises(ConfigError) as refused:
        Repository(tmp_path).read("m")
    assert (
        refused.value.message
        == f"{tmp_path.name}/m/model.yaml: key 'scale' is given twice (lines 3 and 5)"
    )
