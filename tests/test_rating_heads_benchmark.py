"""benchmarks/rating_heads.py: every photo scored by heads that never saw its fold's labels or ratings."""
import importlib.util

import numpy as np

from helpers import ROOT, repo_params


def benchmark():
    spec = importlib.util.spec_from_file_location("rating_heads_benchmark", ROOT / "benchmarks/rating_heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_fold_is_scored_by_heads_fit_on_the_other_folds_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 100, 12))
    valence = 4 + x.mean(axis=0) @ rng.normal(size=12) * 0.5
    rows = [{"path": f"{i}.jpg", "label": "Positive" if v > 4 else "Negative", "group": f"g{i // 2}",
             "fold": (i // 2) % 4, "valence": f"{v:.4f}"} for i, v in enumerate(valence)]
    p = repo_params("train")
    p = p.__class__(**{**p.__dict__, "frozen": p.frozen.__class__(**{**p.frozen.__dict__, "inner_folds": 3,
                                                                     "rating_alphas": (1.0, 10.0)})})
    run = benchmark()
    probability, predicted = run.out_of_fold(rows, x, p)
    assert np.corrcoef(predicted, valence)[0, 1] > 0.9  # a learnable rating, learnt
    poisoned = [{**r, "valence": "1.0", "label": "Negative"} if r["fold"] == 2 else r for r in rows]
    again_probability, again_predicted = run.out_of_fold(poisoned, x, p)
    held_out = np.array([r["fold"] == 2 for r in rows])
    np.testing.assert_allclose(again_predicted[held_out], predicted[held_out])  # fold 2's own ratings never used
    np.testing.assert_allclose(again_probability[held_out], probability[held_out])
    assert not np.allclose(again_predicted[~held_out], predicted[~held_out])  # the others learnt from fold 2
