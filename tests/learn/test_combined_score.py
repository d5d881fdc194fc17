"""The classifier and the valence head together: a logistic map of the two, folded into one Dense unit."""
import numpy as np

from valence.learn import combined_score
from valence.learn.calibration import logit


def test_fit_recovers_the_weights_that_made_the_labels():
    rng = np.random.default_rng(0)
    classifier_logit, valence = rng.normal(0, 1.5, 20000), rng.uniform(1, 7, 20000)
    truth = 1 / (1 + np.exp(-(0.5 * classifier_logit + 1.5 * valence - 6)))
    y = (rng.random(20000) < truth).astype(int)
    weights = combined_score.fit(y, 1 / (1 + np.exp(-classifier_logit)), valence)
    np.testing.assert_allclose(weights, (0.5, 1.5, -6), atol=0.15)
    np.testing.assert_allclose(combined_score.apply(weights, [0.5], [4.0]), 1 / (1 + np.exp(-(4 * weights[1] + weights[2]))))


def test_the_folded_dense_unit_gives_the_combined_probability():
    """sigmoid(features · kernel + bias) of the folded unit equals the map applied to the two heads' outputs."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    classifier = rng.normal(size=(8, 1)), rng.normal(size=1)
    valence = rng.normal(size=(8, 1)), 4 + rng.normal(size=1)
    combiner = (0.7, 1.2, -4.5)
    kernel, bias = combined_score.dense_weights(combiner, classifier, valence)
    folded = 1 / (1 + np.exp(-(x @ kernel + bias)))[:, 0]
    probability = 1 / (1 + np.exp(-(x @ classifier[0] + classifier[1])))[:, 0]
    expected = combined_score.apply(combiner, probability, (x @ valence[0] + valence[1])[:, 0])
    np.testing.assert_allclose(folded, expected, rtol=1e-4)
    assert kernel.dtype == np.float32 and kernel.shape == (8, 1) and bias.shape == (1,)
    np.testing.assert_allclose(logit(probability), (x @ classifier[0] + classifier[1])[:, 0], rtol=1e-6)
