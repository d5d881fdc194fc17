from collections import Counter

import pytest

from valence.data.labels import class_counts
from valence.errors import PipelineError
from valence.data.folds import (assign_folds, check_fold_shares, check_no_shared_groups, fold_count, fold_shares,
                                fold_sides, grouped_folds, groups_in_several_folds, merge_groups, pairs_across,
                                shared_groups, stratified_split)


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
    assert class_counts(train) == {"Negative": 24, "Positive": 56}


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


def concepts(sizes, seed=0):
    """Rows of concepts with the given numbers of photos; a concept's photos share its label, as in OASIS."""
    import random

    rng = random.Random(seed)
    rows = []
    for c, size in enumerate(sizes):
        label = "Negative" if rng.random() < 0.35 else "Positive"
        rows += [{"path": f"img/c{c:03d}_{i:02d}.jpg", "label": label, "group": f"concept {c}"} for i in range(size)]
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouped_split_keeps_every_group_on_one_side_and_stays_stratified(seed):
    rows = concepts([1, 2, 3, 5, 8, 20] * 8, seed=seed)
    train, test = stratified_split(rows, 0.2, seed, grouped=True)
    assert not shared_groups(train, test)
    assert sorted(r["path"] for r in train + test) == sorted(r["path"] for r in rows)
    share = lambda part: sum(r["label"] == "Positive" for r in part) / len(part)  # noqa: E731
    assert abs(share(test) - share(rows)) < 0.1
    assert 0.1 < len(test) / len(rows) < 0.3


def test_ungrouped_split_of_the_same_rows_leaks_groups():
    """The check above can fail: image-by-image splitting puts large concepts on both sides."""
    rows = concepts([1, 2, 3, 5, 8, 20] * 8)
    train, test = stratified_split(rows, 0.2, 0, grouped=False)
    assert len(shared_groups(train, test)) > 5


def test_grouped_split_is_deterministic_and_seeded():
    rows = concepts([1, 2, 3, 5, 8] * 10)
    first, again, other = (stratified_split(rows, 0.2, seed, grouped=True) for seed in (5, 5, 6))
    assert first == again and first[1] != other[1]


def test_grouped_folds_cover_every_image_once():
    rows = concepts([1, 2, 4, 7] * 10)
    folds = grouped_folds(rows, 5, seed=1)
    held_out = [r["path"] for _, test in folds for r in test]
    assert sorted(held_out) == sorted(r["path"] for r in rows)
    for train, test in folds:
        assert not shared_groups(train, test) and len(train) + len(test) == len(rows)


@pytest.mark.parametrize("test_size, k", [(0.2, 5), (0.25, 4), (0.1, 10), (0.5, 2), (0.6, 2), (0.3, 3)])
def test_fold_count_is_one_over_the_test_size(test_size, k):
    assert fold_count(test_size) == k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_folds_give_every_image_one_fold_and_every_group_one_fold(seed):
    rows = concepts([1, 2, 3, 5, 8, 20] * 8, seed=seed)
    folded = assign_folds(rows, 5, seed)
    assert sorted(r["path"] for r in folded) == sorted(r["path"] for r in rows)  # each image exactly once
    assert [r["path"] for r in folded] == sorted(r["path"] for r in folded)
    assert {r["fold"] for r in folded} == set(range(5)) and not groups_in_several_folds(folded)
    share = lambda part: sum(r["label"] == "Positive" for r in part) / len(part)  # noqa: E731
    for k in range(5):
        part = [r for r in folded if r["fold"] == k]
        assert abs(share(part) - share(rows)) < 0.15 and 0.1 < len(part) / len(rows) < 0.3
    train, test = stratified_split(rows, 0.2, seed, grouped=True)  # fold 0 is the grouped test split
    assert [r["path"] for r in folded if r["fold"] == 0] == [r["path"] for r in test]
    assert folded == assign_folds(rows, 5, seed) and folded != assign_folds(rows, 5, seed + 10)


def test_image_by_image_folds_put_groups_in_several_folds():
    """The check above can fail: ungrouped folds spread large concepts over folds."""
    folded = assign_folds(concepts([1, 2, 3, 5, 8, 20] * 8), 5, 0, grouped=False)
    assert len(groups_in_several_folds(folded)) > 5
    assert len(folded) == 39 * 8 and {r["fold"] for r in folded} == set(range(5))


@pytest.mark.parametrize("grouped", [True, False])
def test_a_fold_without_both_classes_is_a_clear_error(grouped):
    with pytest.raises(PipelineError, match=r"labels: fold [0-4] of 5 holds only Positive"):
        assign_folds(table(2, 30), 5, 0, grouped=grouped)  # 2 Negative images cannot reach 5 folds


def test_too_few_groups_for_the_folds_is_a_clear_error():
    with pytest.raises(PipelineError, match="3 groups cannot fill 5 folds"):
        grouped_folds(concepts([4, 4, 4], seed=3) + [{"path": "x", "label": "Negative", "group": "concept 0"},
                                                     {"path": "y", "label": "Positive", "group": "concept 1"}],
                      5, seed=0)


def test_too_few_images_of_every_class_for_the_folds_is_a_clear_error():
    with pytest.raises(PipelineError, match=r"^labels: 4 Negative and 4 Positive images cannot fill 5 stratified folds"):
        grouped_folds(table(4, 4), 5, seed=0)  # scikit-learn's own ValueError otherwise


def test_merge_groups_joins_connected_pairs():
    rows = [{"path": p, "label": "Positive", "group": g} for p, g in
            (("a1", "A"), ("a2", "A"), ("b1", "B"), ("c1", "C"), ("d1", "D"), ("e1", ""))]
    merged = {r["path"]: r["group"] for r in merge_groups(rows, [("a2", "c1"), ("c1", "e1"), ("zz", "b1")])}
    assert merged == {"a1": "A", "a2": "A", "c1": "A", "e1": "A", "b1": "B", "d1": "D"}


def test_pairs_across_finds_only_pairs_split_apart():
    first, second = [{"path": "a"}, {"path": "b"}], [{"path": "c"}]
    assert pairs_across(first, second, [("a", "b"), ("c", "a"), ("b", "x")]) == [("c", "a")]


def test_check_no_shared_groups_names_them():
    with pytest.raises(PipelineError, match="group.s. Dog on both sides"):
        check_no_shared_groups([{"path": "a", "group": "Dog"}], [{"path": "b", "group": "Dog"}], "labels")


def test_fold_sides_hold_out_one_fold_and_train_on_the_rest():
    rows = assign_folds(concepts([1, 2, 3, 5, 8] * 8, seed=3), 5, seed=3)
    for fold in range(5):
        trained_on, held_out = fold_sides([{**r, "fold": str(r["fold"])} for r in rows], fold)  # as read from CSV
        assert {r["path"] for r in held_out} == {r["path"] for r in rows if r["fold"] == fold}
        assert len(trained_on) + len(held_out) == len(rows) and not shared_groups(trained_on, held_out)
    assert fold_sides(rows, 5)[1] == []  # a fold the split did not make: nothing held out


def test_fold_sides_refuse_a_group_in_two_folds_and_a_fold_that_is_no_number():
    rows = [{"path": "a", "group": "Dog", "fold": "0"}, {"path": "b", "group": "Dog", "fold": "1"}]
    with pytest.raises(PipelineError, match="fold 0: group.s. Dog on both sides"):
        fold_sides(rows, 0)
    with pytest.raises(PipelineError, match="folds.csv: every row needs an integer fold"):
        fold_sides([{"path": "a", "group": "", "fold": "first"}], 0)


def test_even_folds_pass_the_share_check_and_name_their_largest_group():
    rows = assign_folds(concepts([1, 2, 3, 5, 8] * 8, seed=0), 5, 0)
    largest = check_fold_shares(rows, 5, tolerance=0.05)
    sizes = Counter(r["group"] for r in rows)
    assert largest["images"] == max(sizes.values()) and sizes[largest["group"]] == largest["images"]
    shares = fold_shares(rows, 5)
    assert sum(shares.values()) == pytest.approx(1, abs=1e-3) and max(abs(s - 0.2) for s in shares.values()) <= 0.05


def test_a_group_too_large_for_even_folds_is_one_line_naming_it():
    """Half the images in one group (near-copies chained together): no fold assignment gives 5 folds of 20 %."""
    rows = concepts([1] * 40 + [40], seed=0)
    giant = max(Counter(r["group"] for r in rows).items(), key=lambda item: item[1])[0]
    folded = assign_folds(rows, 5, 0)
    with pytest.raises(PipelineError) as err:
        check_fold_shares(folded, 5, tolerance=0.05)
    message = str(err.value)
    assert f"the largest group, {giant!r}, holds 40 images (50.0% of all)" in message and "\n" not in message
    assert check_fold_shares(folded, 5, tolerance=0.5)["share"] == 0.5  # a tolerance that allows it
