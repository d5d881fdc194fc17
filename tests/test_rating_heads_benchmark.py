"""benchmarks/rating_heads.py: every photo scored by heads that never saw its fold's labels or ratings."""
import dataclasses
import importlib.util

import numpy as np

from helpers import ROOT, repo_params


def benchmark():
    spec = importlib.util.spec_from_file_location("rating_heads_benchmark", ROOT / "benchmarks/rating_heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_fold_is_scored_by_heads_fit_on_the_other_folds_only(tmp_path):
    from valence.learn import features

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 100, 12)).astype(np.float32)
    valence = 4 + x.mean(axis=0) @ rng.normal(size=12) * 0.5
    rows = [{"path": f"{i}.jpg", "label": "Positive" if v + rng.normal(0, 0.3) > 4 else "Negative",
             "group": f"g{i // 2}", "fold": (i // 2) % 4, "valence": f"{v:.4f}"} for i, v in enumerate(valence)]
    features.save(tmp_path, [r["path"] for r in rows], x)
    p = repo_params("train")
    p = dataclasses.replace(p, frozen=dataclasses.replace(p.frozen, inner_folds=3, rating_alphas=(1.0, 10.0),
                                                          regularization=(0.1,), combine_valence=True))
    run = benchmark()
    scored = run.out_of_fold(rows, p, tmp_path)
    assert sorted(scored) == ["classifier_probability", "predicted_valence", "probability"]  # no arousal rated
    assert np.corrcoef(scored["predicted_valence"], valence)[0, 1] > 0.9  # a learnable rating, learnt
    assert not np.allclose(scored["probability"], scored["classifier_probability"])  # combined with the valence head
    poisoned = [{**r, "valence": "1.0", "label": "Negative" if i % 2 else "Positive"} if r["fold"] == 2 else r
                for i, r in enumerate(rows)]
    again = run.out_of_fold(poisoned, p, tmp_path)
    held_out = np.array([r["fold"] == 2 for r in rows])
    for column in scored:  # fold 2's own labels and ratings never used to score it
        np.testing.assert_allclose(again[column][held_out], scored[column][held_out], err_msg=column)
    assert not np.allclose(again["predicted_valence"][~held_out], scored["predicted_valence"][~held_out])
    assert not np.allclose(again["probability"][~held_out], scored["probability"][~held_out])  # the others learnt from it
