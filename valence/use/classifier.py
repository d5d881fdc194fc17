"""A trained model behind one small interface, for evaluate, export, predict and serve: uint8 RGB batches in,
P(Positive) out.

    classifier = open_classifier("models/model.keras")   # Keras (imports TensorFlow)
    classifier = open_classifier("models/model.tflite")  # LiteRT (ai-edge-litert; no TensorFlow)
    classifier.probabilities(batch)                      # batch: (N, height, width, 3) uint8 → (N,) float32

Both run the same preprocessing (`images.decode` and `images.model_input`) before this point, so a photo gets
the probability evaluate gave it, whichever file serves it.
"""
import threading
from pathlib import Path

import numpy as np

from valence.errors import PipelineError
from valence.files import digest_of


class KerasClassifier:
    """A Keras model run through one traced inference step (``load``: from a ``.keras`` file, in safe mode)."""

    def __init__(self, model):
        from valence.learn import models

        self.model = model
        _, self.height, self.width, _ = model.input_shape
        self._step = models.inference_step(model)

    @classmethod
    def load(cls, path):
        from valence import runtime
        from valence.learn import models

        runtime.configure()
        return cls(models.load(path))

    def probabilities(self, batch):
        return np.asarray(self._step(np.asarray(batch, dtype=np.float32)), dtype=np.float32).reshape(-1)


class LiteRTClassifier:
    """An exported ``.tflite`` model run by the LiteRT interpreter; the batch dimension is resized per call.

    The interpreter is not thread-safe: calls are serialised with a lock.
    """

    def __init__(self, path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise PipelineError(f"{path}: running a LiteRT model needs ai-edge-litert "
                                "(pip install -r requirements-serve.txt)") from None
        from valence.runtime import cores

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=cores())
        except (ValueError, RuntimeError) as err:
            raise PipelineError(f"{path}: cannot load the LiteRT model ({str(err).splitlines()[0]})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        _, self.height, self.width, channels = (int(n) for n in self._input["shape_signature"])
        if channels != 3 or len(self._output["shape_signature"]) != 2:
            raise PipelineError(f"{path}: not an image classifier of this project "
                                f"(input {list(self._input['shape_signature'])}, "
                                f"output {list(self._output['shape_signature'])})")
        self._lock = threading.Lock()
        self._batch = None

    def probabilities(self, batch):
        batch = np.asarray(batch, dtype=np.float32)
        with self._lock:
            if self._batch != len(batch):  # reallocating costs a little; serving repeats batch sizes
                self._interpreter.resize_tensor_input(self._input["index"], batch.shape)
                self._interpreter.allocate_tensors()
                self._batch = len(batch)
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output["index"]).astype(np.float32).reshape(-1)


BACKENDS = {".keras": KerasClassifier.load, ".tflite": LiteRTClassifier}


def check_model_path(path):
    """``path`` as a Path, if it names an existing model file of a known format; a one-line error if not."""
    path = Path(path)
    if path.suffix not in BACKENDS:
        raise PipelineError(f"{path}: unknown model format; expected one of {', '.join(BACKENDS)}")
    if not path.is_file():
        hint = "run `dvc repro export`" if path.suffix == ".tflite" else "run `dvc repro train`"
        raise PipelineError(f"{path}: model file not found; {hint}")
    return path


def open_classifier(path):
    """The classifier in ``path``, by suffix (.keras or .tflite), with ``path`` and ``version`` set: the file's
    MD5, which dvc.lock records for the out, so it names the model version."""
    path = check_model_path(path)
    classifier = BACKENDS[path.suffix](path)
    classifier.path, classifier.version = str(path), digest_of(path, "md5")  # = its md5 in dvc.lock
    return classifier
