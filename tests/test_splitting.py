from collections import Counter

import pytest

from valence.errors import PipelineError
from valence.splitting import class_counts, stratified_split


def table(negative, positive):
    return ([{"path": f"img/n{i:03d}.jpg", "label": "Negative"} for i in range(negative)]
            + [{"path": f"img/p{i:03d}.jpg", "label": "Positive"} for i in range(positive)])


def test_split_is_stratified_complete_and_disjoint():
    rows = table(30, 70)
    train, test = stratified_split(rows, 0.2, seed=21)
    assert len(test) == 20 and len(train) == 80
    assert Counter(r["label"] for r in test) == {"Negative": 6, "Positive": 14}
    assert {r["path"] for r in train} | {r["path"] for r in test} == {r["path"] for r in rows}
    assert not {r["path"] for r in train} & {r["path"] for r in test}
    assert [r["path"] for r in test] == sorted(r["path"] for r in test)
    assert class_counts(train, ("Negative", "Positive")) == {"Negative": 24, "Positive": 56}


def test_same_seed_same_split_other_seed_other_split():
    rows = table(30, 70)
    first, again, other = (stratified_split(rows, 0.2, seed) for seed in (21, 21, 22))
    assert first == again
    assert first[1] != other[1]


@pytest.mark.parametrize("rows, message", [
    (table(0, 10), "only one class"),
    (table(1, 10), "too few images to stratify"),
])
def test_unsplittable_tables_are_clear_errors(rows, message):
    with pytest.raises(PipelineError, match=message):
        stratified_split(rows, 0.2, seed=0)


def test_test_size_too_small_for_both_classes():
    with pytest.raises(PipelineError, match="cannot split"):
        stratified_split(table(5, 5), 0.05, seed=0)
