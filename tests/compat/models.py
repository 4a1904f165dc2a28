"""Python models that mimic Triton's test models (the ones its client examples call),
written into a repository folder for a real server to serve."""

from __future__ import annotations

from pathlib import Path

#: ``simple``: two INT32 [-1, 16] inputs -> their sum and difference.
SIMPLE = (
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        a, b = inputs['INPUT0'], inputs['INPUT1']\n"
    "        return {'OUTPUT0': a + b, 'OUTPUT1': a - b}\n"
)
SIMPLE_YAML = """runtime: python
max_batch_size: 8
inputs:
  - {name: INPUT0, datatype: INT32, shape: [-1, 16]}
  - {name: INPUT1, datatype: INT32, shape: [-1, 16]}
outputs:
  - {name: OUTPUT0, datatype: INT32, shape: [-1, 16]}
  - {name: OUTPUT1, datatype: INT32, shape: [-1, 16]}
"""

#: ``simple_string``: as ``simple``, numbers written as strings (BYTES) both ways.
SIMPLE_STRING = (
    "import numpy as np\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        a = inputs['INPUT0'].astype(np.int64)\n"
    "        b = inputs['INPUT1'].astype(np.int64)\n"
    "        text = np.vectorize(lambda v: str(v).encode(), otypes=[object])\n"
    "        return {'OUTPUT0': text(a + b), 'OUTPUT1': text(a - b)}\n"
)
#: (No warm-up: the warm-up's empty strings are not numbers.)
SIMPLE_STRING_YAML = SIMPLE_YAML.replace("INT32", "BYTES") + "warmup: false\n"

#: ``add_sub``: FP32 [-1, 4] inputs -> sum and difference (the KServe SDK's checks).
ADD_SUB = SIMPLE
ADD_SUB_YAML = SIMPLE_YAML.replace("INT32", "FP32").replace("16]", "4]")

#: ``echo``: one BYTES [-1, -1] input returned as it came.
ECHO = (
    "class Model:\n    def predict(self, inputs):\n        return {'OUTPUT0': inputs['INPUT0']}\n"
)
ECHO_YAML = """runtime: python
max_batch_size: 8
inputs:
  - {name: INPUT0, datatype: BYTES, shape: [-1, -1]}
outputs:
  - {name: OUTPUT0, datatype: BYTES, shape: [-1, -1]}
"""

MODELS = {
    "simple": (SIMPLE, SIMPLE_YAML),
    "simple_string": (SIMPLE_STRING, SIMPLE_STRING_YAML),
    "add_sub": (ADD_SUB, ADD_SUB_YAML),
    "echo": (ECHO, ECHO_YAML),
}


def write_model(root: Path, name: str, code: str, yaml: str, version: str = "1") -> Path:
    folder = root / name
    (folder / version).mkdir(parents=True, exist_ok=True)
    (folder / version / "model.py").write_text(code)
    (folder / "model.yaml").write_text(yaml)
    return folder


def write_models(root: Path, *names: str) -> Path:
    """The named models of :data:`MODELS` (all of them when none is named) under ``root``."""
    for name in names or tuple(MODELS):
        code, yaml = MODELS[name]
        folder = write_model(root, name, code, yaml)
        for file, text in EXTRA_FILES.get(name, {}).items():
            (folder / file).write_text(text)
    return root


#: ``accumulate``: a running total kept by the model per correlation id, from the START,
#: READY and CORRID controls it declares.
ACCUMULATE = (
    "import numpy as np\n"
    "class Model:\n"
    "    def load(self):\n"
    "        self.totals = {}\n"
    "    def predict(self, inputs):\n"
    "        x, start = inputs['INPUT'][:, 0], inputs['START'][:, 0]\n"
    "        ready, corrid = inputs['READY'][:, 0], inputs['CORRID'][:, 0]\n"
    "        out = np.zeros(len(x), dtype=np.int32)\n"
    "        for i in range(len(x)):\n"
    "            if ready[i]:\n"
    "                key = corrid[i] if isinstance(corrid[i], bytes) else int(corrid[i])\n"
    "                total = 0 if start[i] else self.totals.get(key, 0)\n"
    "                self.totals[key] = out[i] = total + int(x[i])\n"
    "        return {'OUTPUT': out.reshape(-1, 1)}\n"
)
ACCUMULATE_YAML = """runtime: python
max_batch_size: 2
inputs:
  - {name: INPUT, datatype: INT32, dims: [1]}
outputs:
  - {name: OUTPUT, datatype: INT32, dims: [1]}
sequence_batching:
  strategy: direct
  control_input:
    - {name: START, control: [{kind: CONTROL_SEQUENCE_START, int32_false_true: [0, 1]}]}
    - {name: READY, control: [{kind: CONTROL_SEQUENCE_READY, int32_false_true: [0, 1]}]}
    - {name: CORRID, control: [{kind: CONTROL_SEQUENCE_CORRID, data_type: TYPE_UINT64}]}
"""
#: ``accumulate_string``: the same with string correlation ids.
ACCUMULATE_STRING_YAML = ACCUMULATE_YAML.replace("TYPE_UINT64", "TYPE_STRING")

#: ``sequence_state``: the same accumulator with inferd's implicit per-sequence state.
SEQUENCE_STATE = (
    "import numpy as np\n"
    "class Model:\n"
    "    def predict(self, inputs, states):\n"
    "        out = []\n"
    "        for value, state in zip(inputs['INPUT'][:, 0], states):\n"
    "            state['total'] = state.get('total', 0) + int(value)\n"
    "            out.append(state['total'])\n"
    "        return {'OUTPUT': np.array(out, dtype=np.int32).reshape(-1, 1)}\n"
)
SEQUENCE_STATE_YAML = """runtime: python
max_batch_size: 4
inputs:
  - {name: INPUT, datatype: INT32, dims: [1]}
outputs:
  - {name: OUTPUT, datatype: INT32, dims: [1]}
sequence_batching:
  strategy: oldest
  max_candidate_sequences: 3
  max_sequence_idle_microseconds: 500000
  state: true
"""

MODELS.update(
    {
        "accumulate": (ACCUMULATE, ACCUMULATE_YAML),
        "accumulate_string": (ACCUMULATE, ACCUMULATE_STRING_YAML),
        "sequence_state": (SEQUENCE_STATE, SEQUENCE_STATE_YAML),
    }
)


# -- the models Triton's client examples call ---------------------------------------------

#: ``simple_identity``: one BYTES input returned as it came.
SIMPLE_IDENTITY_YAML = ECHO_YAML

#: ``simple_sequence``: OUTPUT = INPUT, plus 1 on a sequence's first request (START); no
#: CORRID control, so sequence ids may be numbers or strings.
SIMPLE_SEQUENCE = (
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        ready = inputs['READY']\n"
    "        return {'OUTPUT': (inputs['INPUT'] + inputs['START']) * ready}\n"
)
SIMPLE_SEQUENCE_YAML = """runtime: python
max_batch_size: 8
inputs:
  - {name: INPUT, datatype: INT32, dims: [1]}
outputs:
  - {name: OUTPUT, datatype: INT32, dims: [1]}
sequence_batching:
  strategy: direct
  control_input:
    - {name: START, control: [{kind: CONTROL_SEQUENCE_START, int32_false_true: [0, 1]}]}
    - {name: READY, control: [{kind: CONTROL_SEQUENCE_READY, int32_false_true: [0, 1]}]}
"""

#: ``simple_dyna_sequence``: as simple_sequence, plus the correlation id on the last request
#: (the oldest strategy, Triton's "dyna" batcher).
SIMPLE_DYNA_SEQUENCE = (
    "import numpy as np\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        corrid = inputs['CORRID'].astype(np.int32)\n"
    "        out = inputs['INPUT'] + inputs['START'] + inputs['END'] * corrid\n"
    "        return {'OUTPUT': out * inputs['READY']}\n"
)
SIMPLE_DYNA_SEQUENCE_YAML = """runtime: python
max_batch_size: 8
inputs:
  - {name: INPUT, datatype: INT32, dims: [1]}
outputs:
  - {name: OUTPUT, datatype: INT32, dims: [1]}
sequence_batching:
  strategy: oldest
  control_input:
    - {name: START, control: [{kind: CONTROL_SEQUENCE_START, int32_false_true: [0, 1]}]}
    - {name: END, control: [{kind: CONTROL_SEQUENCE_END, int32_false_true: [0, 1]}]}
    - {name: READY, control: [{kind: CONTROL_SEQUENCE_READY, int32_false_true: [0, 1]}]}
    - {name: CORRID, control: [{kind: CONTROL_SEQUENCE_CORRID, data_type: TYPE_UINT64}]}
"""

#: ``simple_string_dyna_sequence``: a running total (inferd's implicit state) plus the
#: string correlation id, read as a number, on the last request.
SIMPLE_STRING_DYNA_SEQUENCE = (
    "import numpy as np\n"
    "class Model:\n"
    "    def predict(self, inputs, states):\n"
    "        out = []\n"
    "        for i, state in enumerate(states):\n"
    "            state['total'] = state.get('total', 0) + int(inputs['INPUT'][i, 0])\n"
    "            end = int(inputs['CORRID'][i, 0]) if inputs['END'][i, 0] else 0\n"
    "            out.append(state['total'] + end)\n"
    "        return {'OUTPUT': np.array(out, dtype=np.int32).reshape(-1, 1)}\n"
)
SIMPLE_STRING_DYNA_SEQUENCE_YAML = """runtime: python
max_batch_size: 8
inputs:
  - {name: INPUT, datatype: INT32, dims: [1]}
outputs:
  - {name: OUTPUT, datatype: INT32, dims: [1]}
sequence_batching:
  strategy: oldest
  state: true
  control_input:
    - {name: END, control: [{kind: CONTROL_SEQUENCE_END, int32_false_true: [0, 1]}]}
    - {name: CORRID, control: [{kind: CONTROL_SEQUENCE_CORRID, data_type: TYPE_STRING}]}
"""

#: ``repeat_int32``: Triton's decoupled repeat model: each IN element on its own response.
REPEAT = (
    "import time\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        for value, delay in zip(inputs['IN'], inputs['DELAY']):\n"
    "            time.sleep(int(delay) / 1e6)\n"
    "            yield {'OUT': value.reshape(1), 'IDX': value.reshape(1) * 0}\n"
)
REPEAT_YAML = """runtime: python
max_batch_size: 0
inputs:
  - {name: IN, datatype: INT32, dims: [-1]}
  - {name: DELAY, datatype: UINT32, dims: [-1]}
  - {name: WAIT, datatype: UINT32, dims: [1]}
outputs:
  - {name: OUT, datatype: INT32, dims: [1]}
  - {name: IDX, datatype: UINT32, dims: [1]}
"""

#: ``classifier``: image-shaped input (NCHW), 4 class scores with a label file.
CLASSIFIER = (
    "import numpy as np\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        x = inputs['INPUT'].reshape(len(inputs['INPUT']), -1)[:, :4]\n"
    "        return {'OUTPUT': x.astype(np.float32)}\n"
)
CLASSIFIER_YAML = """runtime: python
max_batch_size: 4
inputs:
  - {name: INPUT, datatype: FP32, dims: [3, 2, 2], format: FORMAT_NCHW}
outputs:
  - {name: OUTPUT, datatype: FP32, dims: [4], label_filename: labels.txt}
"""
CLASSIFIER_LABELS = "tabby\nterrier\nsparrow\ntrout\n"

MODELS.update(
    {
        "simple_identity": (ECHO, SIMPLE_IDENTITY_YAML),
        "simple_sequence": (SIMPLE_SEQUENCE, SIMPLE_SEQUENCE_YAML),
        "simple_dyna_sequence": (SIMPLE_DYNA_SEQUENCE, SIMPLE_DYNA_SEQUENCE_YAML),
        "simple_string_dyna_sequence": (
            SIMPLE_STRING_DYNA_SEQUENCE,
            SIMPLE_STRING_DYNA_SEQUENCE_YAML,
        ),
        "repeat_int32": (REPEAT, REPEAT_YAML),
        "classifier": (CLASSIFIER, CLASSIFIER_YAML),
    }
)
EXTRA_FILES = {"classifier": {"labels.txt": CLASSIFIER_LABELS}}
