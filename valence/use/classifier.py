"""A trained model behind one small interface, for evaluate, export, predict and serve: uint8 RGB batches in,
P(Positive) out.

    classifier = open_classifier("models/model.keras")   # Keras (imports TensorFlow)
    classifier = open_classifier("models/model.tflite")  # LiteRT (ai-edge-litert; no TensorFlow)
    classifier.probabilities(batch)                      # batch: (N, height, width, 3) uint8 → (N,) float32
    classifier.scores(batch)                             # {"probability": (N,), "valence": (N,), …}
    classifier.ratings                                   # {"valence": (1.0, 7.0), …}: the ratings it learnt
    classifier.photo_check                               # True: scores() also gives "photo" (below 0.5: not a photo)
    classifier.logit_map                                 # True: scores() also gives "logit_map" (N, rows, columns)

Both run the same preprocessing (`images.decode` and `images.model_input`) before this point, so a photo gets
the probability evaluate gave it, whichever file serves it.
"""
import threading
from pathlib import Path

import numpy as np

from valence.config import LOGIT_MAP, PHOTO, PROBABILITY, parse_output_name
from valence.data.labels import RATINGS
from valence.errors import PipelineError
from valence.files import digest_of


def named_scores(outputs):
    """A model's outputs as {"probability": (N,), rating: (N,) …, "photo": (N,)}, and its ratings' scales
    {rating: (low, high)}: a single output is P(Positive); the ratings are named by ``config.output_name``,
    the photo check's score "photo" (below 0.5: not like the photos the model learnt from); LOGIT_MAP, where the
    model gives it, as it is (N, rows, columns)."""
    if not isinstance(outputs, dict):
        return {PROBABILITY: np.asarray(outputs, dtype=np.float32).reshape(-1)}, {}
    scores, scales = {}, {}
    for key, value in outputs.items():
        if key == LOGIT_MAP:
            scores[key] = np.asarray(value, dtype=np.float32)
            continue
        rating = parse_output_name(key)
        name = key if key == PHOTO else PROBABILITY if rating is None else rating[0]
        if rating is not None:
            scales[name] = rating[1]
        scores[name] = np.asarray(value, dtype=np.float32).reshape(-1)
    if PROBABILITY not in scores:
        raise PipelineError(f"a model output named 'probability' is missing (outputs: {', '.join(outputs)})")
    order = sorted(scales, key=lambda n: (RATINGS.index(n) if n in RATINGS else len(RATINGS), n))  # as labels.csv
    return scores, {name: scales[name] for name in order}


class KerasClassifier:
    """A Keras model run through one traced inference step (``load``: from a ``.keras`` file, in safe mode).
    ``scores`` gives P(Positive) and, for a model with rating heads, each rating (``ratings``: their scales)."""

    def __init__(self, model):
        from valence.learn import models

        self.model = model
        _, self.height, self.width, _ = model.input_shape
        self._step = models.inference_step(model)
        try:
            outputs = model.output  # a dict for a model with rating heads
        except AttributeError:  # a Sequential model never called: one output, P(Positive)
            outputs = None
        self.ratings = named_scores({k: [] for k in outputs})[1] if isinstance(outputs, dict) else {}
        self.photo_check = isinstance(outputs, dict) and PHOTO in outputs
        self.logit_map = isinstance(outputs, dict) and LOGIT_MAP in outputs

    @classmethod
    def load(cls, path):
        from valence import runtime
        from valence.learn import models

        runtime.configure()
        return cls(models.load(path))

    def scores(self, batch):
        return named_scores(self._step(np.asarray(batch, dtype=np.float32)))[0]

    def probabilities(self, batch):
        return self.scores(batch)[PROBABILITY]


class LiteRTClassifier:
    """An exported ``.tflite`` model run by the LiteRT interpreter through its signature (which resizes the batch
    dimension per call); outputs as ``KerasClassifier``'s.

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
            interpreter = Interpreter(model_path=str(path), num_threads=cores())
            self._runner = interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as err:
            raise PipelineError(f"{path}: cannot load the LiteRT model ({str(err).splitlines()[0]})") from None
        inputs, outputs = self._runner.get_input_details(), self._runner.get_output_details()
        self._input = next(iter(inputs))
        shape = list(inputs[self._input]["shape_signature"])
        shapes = [list(o["shape_signature"]) for name, o in outputs.items() if name != LOGIT_MAP]
        if len(inputs) != 1 or len(shape) != 4 or shape[3] != 3 or any(len(s) != 2 for s in shapes):
            raise PipelineError(f"{path}: not an image classifier of this project (inputs "
                                f"{[list(d['shape_signature']) for d in inputs.values()]}, outputs {shapes})")
        _, self.height, self.width, _ = (int(n) for n in shape)
        self.ratings = named_scores({k: [] for k in outputs})[1] if len(outputs) > 1 else {}
        self.photo_check, self.logit_map = PHOTO in outputs, LOGIT_MAP in outputs
        self._lock = threading.Lock()

    def scores(self, batch):
        batch = np.asarray(batch, dtype=np.float32)
        with self._lock:
            outputs = self._runner(**{self._input: batch})
        return named_scores(outputs if len(outputs) > 1 else next(iter(outputs.values())))[0]

    def probabilities(self, batch):
        return self.scores(batch)[PROBABILITY]


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
