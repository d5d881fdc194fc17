"""Heads: every output of the frozen model is one linear unit on the extracted features, held as a value.

A ``Head`` is a kernel and a bias over the raw feature vector, an activation (sigmoid: a probability; linear: a
rating), the output's name, the range a rating is kept within and a probability's calibration map. Fitting
returns one: ``logistic`` (the classifier, the photo check) and ``ridge`` (each rating), both standardised, the
standardisation folded into the kernel; ``choose`` picks their regularisation by inner cross-validation.
Combining, calibrating and thresholding are maps from heads to a head (``combine``, ``calibrated``,
``threshold``), so the combined P(Positive), its calibration map and the photo check's line at 0.5 are heads
like the others.

Two readers only: ``score`` (numpy, on stored features: the fold stages, evaluate's inputs, export's check) and
``to_keras`` (the release; LiteRT follows from it). tests/learn/test_heads.py holds them equal on the same
photos, so what the folds measure is what ships.
"""
import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from valence import __version__
from valence.config import LOGIT_MAP, POOLED, PROBABILITY
from valence.files import atomic_path

EPSILON = 1e-7  # keeps logit finite at probabilities of exactly 0 or 1
NO_CALIBRATION = (1.0, 1.0, 0.0)  # the beta map (a, b, c) that leaves a probability as it is


@dataclasses.dataclass(frozen=True, eq=False)
class Head:
    output: str  # the model output (and score) it gives: valence.config names them
    kernel: np.ndarray  # (features,) float64, over the raw (unstandardised) features
    bias: float
    activation: str = "sigmoid"  # sigmoid: a probability; linear: a rating
    within: typing.Optional[tuple] = None  # (low, high) a linear output is clipped to; None: unbounded
    calibration: typing.Optional[tuple] = None  # (a, b, c): a sigmoid head's beta calibration map; None: none

    def logit(self, x):
        """The unit's value before its activation (a logit, or the unclipped rating), for (…, features) ``x``;
        before any calibration map (the logit map adds up to this)."""
        return np.asarray(x, dtype=np.float64) @ self.kernel + self.bias

    def apply(self, x):
        z = self.logit(x)
        if self.activation == "sigmoid":
            if self.calibration is not None:
                z = calibrated_logit(z, self.calibration)
            return 1 / (1 + np.exp(-z))
        return z if self.within is None else np.clip(z, *self.within)


def logit(probability):
    p = np.clip(np.asarray(probability, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def calibrated_logit(z, mapping):
    """The logit after the beta map (a, b, c) (valence.learn.calibration): a · ln p − b · ln(1 − p) + c for
    p = sigmoid(z), written with softplus so that it stays exact where p rounds to 0 or 1."""
    a, b, c = mapping
    return -a * np.logaddexp(0, -z) + b * np.logaddexp(0, z) + c


def score(heads, views):
    """{head.output: (images,)} for (views, images, features) ``views``: each output on each view, then the mean
    over the views, as flip averaging does with view 0 (the photo) and 1 (its mirror)."""
    return {head.output: np.mean([head.apply(view) for view in views], axis=0) for head in heads}


def _standardised(x):
    scaler = StandardScaler().fit(x)
    return scaler, scaler.transform(x)


def _raw(scaler, coef, intercept):
    """(kernel, bias) over raw features of a linear map fit on features standardised by ``scaler``."""
    kernel = np.ravel(coef) / scaler.scale_
    return kernel, float(np.ravel(intercept)[0] - kernel @ scaler.mean_)


def logistic(view_features, y, c, output, class_weight="balanced"):
    """A standardised logistic regression on (views, images, features), each image its views' mean."""
    scaler, x = _standardised(np.mean(view_features, axis=0))
    regression = LogisticRegression(C=c, max_iter=5000, class_weight=None if class_weight == "none" else "balanced")
    regression.fit(x, y)
    return Head(output, *_raw(scaler, regression.coef_, regression.intercept_))


def ridge(view_features, rating, alpha, output, within=None):
    """A standardised ridge regression on (views, images, features), each image its views' mean."""
    scaler, x = _standardised(np.mean(view_features, axis=0))
    regression = Ridge(alpha=alpha).fit(x, rating)
    return Head(output, *_raw(scaler, regression.coef_, regression.intercept_), activation="linear", within=within)


def choose(fit, view_features, target, splits, candidates, metric, stronger, scored=None):
    """(best candidate, {candidate: mean ``metric`` over the inner folds}, {candidate: each image's score from the
    inner fold that held it out}) for ``fit(view_features, target, candidate)`` → Head over ``splits`` [(train,
    test)]; the mean is over the splits whose index is in ``scored`` (all by default); ties go to the ``stronger``
    regularisation (a key: larger is stronger)."""
    scored = range(len(splits)) if scored is None else scored
    scores, held_out = {}, {}
    for candidate in candidates:
        held_out[candidate] = np.zeros(len(target))
        for train, test in splits:
            head = fit(view_features[:, train], target[train], candidate)
            held_out[candidate][test] = score([head], view_features[:, test])[head.output]
        scores[candidate] = float(np.mean([metric(target[splits[i][1]], held_out[candidate][splits[i][1]])
                                           for i in scored]))
    return max(candidates, key=lambda c: (scores[c], stronger(c))), scores, held_out


def stack(y_true, columns):
    """(weights, intercept) of an unpenalised logistic regression from ``columns`` (each a value per image) to
    the labels (0/1): the Platt map (one column, a logit) and the combiner (a logit and a rating) are both this."""
    regression = LogisticRegression(C=np.inf).fit(np.column_stack(columns), np.asarray(y_true))
    return tuple(float(w) for w in regression.coef_[0]), float(regression.intercept_[0])


def combine(terms, intercept, output, activation="sigmoid", within=None):
    """One head computing activation(Σ weight · head's value before its activation + intercept), for ``terms``
    [(weight, head)]: all are linear in the same features, so the sum is one kernel and one bias."""
    if any(head.calibration is not None for _, head in terms):
        raise ValueError("a calibrated head is not linear in its features: calibrate after combining")
    kernel = sum(weight * head.kernel for weight, head in terms)
    bias = sum(weight * head.bias for weight, head in terms) + intercept
    return Head(output, kernel, float(bias), activation, within)


def affine(head, slope, intercept, output=None):
    """``head`` with its value before the activation mapped by slope · z + intercept (a Platt map)."""
    return combine([(slope, head)], intercept, output or head.output, head.activation, head.within)


def calibrated(head, mapping):
    """A sigmoid ``head`` with the beta calibration map ``mapping`` (a, b, c) after its unit (``calibrated_logit``);
    NO_CALIBRATION leaves it as it is."""
    if head.activation != "sigmoid":
        raise ValueError(f"{head.output}: only a probability is calibrated, not a {head.activation} output")
    return head if tuple(mapping) == NO_CALIBRATION else dataclasses.replace(head, calibration=tuple(map(float, mapping)))


def threshold(head, at):
    """A sigmoid ``head`` shifted so that its probability ``at`` scores 0.5: the line sits in the head itself."""
    return affine(head, 1.0, -float(logit(at)))


def save(heads, path, version=__version__):
    """``heads`` as JSON (kernels in full float64 precision) beside ``version``, the valence that made them,
    replaced whole at once."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"valence_version": version, "heads": [
            {**dataclasses.asdict(h), "kernel": h.kernel.tolist()} for h in heads]}))


def load(path):
    saved = json.loads(Path(path).read_text())
    saved = saved["heads"] if isinstance(saved, dict) else saved  # a bare list: saved before versions
    return [Head(**{**h, "kernel": np.asarray(h["kernel"]), "within": tuple(h["within"]) if h["within"] else None,
                     "calibration": tuple(h["calibration"]) if h.get("calibration") else None}) for h in saved]


def cell_shares(source, target):
    """(source, target): the share of each of ``source`` equal cells along a side that falls in each of
    ``target`` equal cells of the same side (each row sums to 1, so spreading a map by it keeps its sum)."""
    edges, onto = np.linspace(0, 1, source + 1), np.linspace(0, 1, target + 1)
    overlap = np.minimum(edges[1:, None], onto[None, 1:]) - np.maximum(edges[:-1, None], onto[None, :-1])
    return np.clip(overlap, 0, None) * source


def feature_maps(extractor):
    """The feature maps (N, h, w, c) whose averages are an extractor's output, in order; [] for a model whose
    output is not those averages as ``features.combined_extractor`` concatenates them (a later layer, another model)."""
    import keras

    pooling = []
    while any(layer.name == POOLED.format(len(pooling)) for layer in extractor.layers):
        pooling.append(extractor.get_layer(POOLED.format(len(pooling))))
    if not pooling:
        return []
    last, pooled = extractor.layers[-1], [id(layer.output) for layer in pooling]
    ends_in_them = last is pooling[0] if len(pooling) == 1 else (
        isinstance(last, keras.layers.Concatenate) and [id(t) for t in last.input] == pooled)
    return [layer.input for layer in pooling] if ends_in_them else []


def logit_map(maps, head):
    """Keras layers giving ``head``'s logit cell by cell, for a head on the average-pooled ``maps`` (N, h, w, c)
    concatenated (``feature_maps``): the logit is Σ_maps kernel slice · mean over cells + bias, so each
    cell's term is kernel slice · cell / cells (a class activation map, Zhou et al. 2016). Each map's terms are
    spread onto the first map's grid by area (``cell_shares``) and added, the bias shared evenly: (N, rows,
    columns) whose sum is the logit, computed in the pass that scores the photo."""
    import keras

    rows, columns = maps[0].shape[1:3]
    terms, start = [], 0
    for i, feature_map in enumerate(maps):
        height, width, channels = feature_map.shape[1:]
        per_cell = keras.layers.Dense(1, use_bias=False, dtype="float32", name=f"{LOGIT_MAP}_{i}_cells")
        term = keras.layers.Reshape((height * width,))(per_cell(feature_map))
        per_cell.set_weights([(head.kernel[start:start + channels] / (height * width))[:, None].astype(np.float32)])
        to_grid = keras.layers.Dense(rows * columns, use_bias=False, dtype="float32", name=f"{LOGIT_MAP}_{i}_grid")
        terms.append(to_grid(term))
        to_grid.set_weights([np.kron(cell_shares(height, rows), cell_shares(width, columns)).astype(np.float32)])
        start += channels
    if start != len(head.kernel):
        raise ValueError(f"the maps have {start} channels, the head {len(head.kernel)} features")
    total = keras.layers.Add()(terms) if len(terms) > 1 else terms[0]
    total = keras.layers.Rescaling(1.0, offset=head.bias / (rows * columns))(total)
    return keras.layers.Reshape((rows, columns), name=LOGIT_MAP)(total)


def _calibrated_unit(features, head):
    """A calibrated sigmoid head in layers safe-mode loading knows and LiteRT converts to builtins: the unit's
    logit z, then softplus(−z) = −ln p and softplus(z) = −ln(1 − p), then sigmoid(−a · the first + b · the second
    + c) (``calibrated_logit``)."""
    import keras

    a, b, c = head.calibration
    unit = keras.layers.Dense(1, dtype="float32", name=f"{head.output}_logit")
    z = unit(features)
    unit.set_weights([head.kernel[:, None].astype(np.float32), np.array([head.bias], np.float32)])
    minus_log_p = keras.layers.Activation("softplus", name=f"{head.output}_minus_log_p")(
        keras.layers.Rescaling(-1.0, name=f"{head.output}_negated")(z))
    minus_log_not_p = keras.layers.Activation("softplus", name=f"{head.output}_minus_log_not_p")(z)
    both = keras.layers.Concatenate(name=f"{head.output}_log_odds_parts")([minus_log_p, minus_log_not_p])
    mapped = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=head.output)
    value = mapped(both)
    mapped.set_weights([np.array([[-a], [b]], np.float32), np.array([c], np.float32)])
    return value


def to_keras(extractor, heads, name=None):
    """The one way heads enter Keras: ``extractor`` (image → features) with a Dense unit per head, each output
    named as its head, ratings clipped to their range: {head.output: (N, 1)}; on an extractor of pooled maps
    (``features.combined_extractor``) also LOGIT_MAP, P(Positive)'s logit cell by cell (``logit_map``)."""
    import keras  # here, not above: fitting and scoring heads needs no TensorFlow

    features, outputs = extractor.output, {}
    for head in heads:
        if head.calibration is not None:
            outputs[head.output] = _calibrated_unit(features, head)
            continue
        dense = keras.layers.Dense(1, activation=head.activation, dtype="float32",
                                   name=head.output if head.within is None else f"{head.output}_unclipped")
        value = dense(features)
        dense.set_weights([head.kernel[:, None].astype(np.float32), np.array([head.bias], np.float32)])
        if head.within is not None:  # clip with layers safe-mode loading knows: shift, ReLU capped at the width, back
            low, high = head.within
            value = keras.layers.Rescaling(1.0, offset=-low, name=f"{head.output}_from_low")(value)
            value = keras.layers.ReLU(max_value=high - low, name=f"{head.output}_within")(value)
            value = keras.layers.Rescaling(1.0, offset=low, name=head.output)(value)
        outputs[head.output] = value
    maps, probability = feature_maps(extractor), [h for h in heads if h.output == PROBABILITY]
    if maps and probability:  # first: readers from before LOGIT_MAP took any unknown output for P(Positive), in
        outputs = {LOGIT_MAP: logit_map(maps, probability[0]), **outputs}  # order, so the real one comes after it
    return keras.Model(extractor.input, outputs, name=name or extractor.name)


def of_last_unit(model, output):
    """(extractor, [head]) of a Keras ``model`` that ends in one sigmoid Dense unit (the models trained on images):
    the model up to that unit's input, and the unit as a head, so it is calibrated and released as ``to_keras``
    releases the frozen heads. A ValueError for a model that does not end in one."""
    import keras

    last = model.layers[-1]
    if not (isinstance(last, keras.layers.Dense) and last.units == 1 and last.activation is keras.activations.sigmoid):
        raise ValueError(f"{model.name}: its last layer, {last.name}, is not a one-unit sigmoid Dense layer")
    kernel, bias = last.get_weights()
    if isinstance(model, keras.Sequential):  # a loaded Sequential model was never called: call its layers anew
        inputs = features = keras.Input(model.input_shape[1:])
        for layer in model.layers[:-1]:
            features = layer(features)
    else:
        inputs, features = model.input, last.input
    extractor = keras.Model(inputs, features, name=model.name)
    return extractor, [Head(output, np.ravel(kernel).astype(np.float64), float(bias[0]))]
