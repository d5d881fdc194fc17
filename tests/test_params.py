import dataclasses

import pytest
import yaml

from helpers import ROOT, project_params, repo_params
from valence import params, train_params
from valence.errors import PipelineError


def write(tmp_path, document):
    """The project's params.yaml with ``document``'s values changed, in ``tmp_path``."""
    path = tmp_path / "params.yaml"
    path.write_text(project_params(document))
    return path


def load(section, path):
    return train_params.load(path) if section == "train" else params.load(section, path)


def test_every_section_of_the_project_params_loads():
    for section, cls in {**params.SECTIONS, "train": train_params.TrainParams}.items():
        assert isinstance(load(section, ROOT / "params.yaml"), cls), section
    assert set(params.read(ROOT / "params.yaml")) == {*params.SECTIONS, "train"}  # every section has a class


def test_the_train_section_is_loaded_where_the_registry_is():
    """params.py never imports the model registry (download … split would depend on it): train is refused there."""
    with pytest.raises(ValueError, match="valence.train_params.load"):
        params.load("train", ROOT / "params.yaml")


def test_a_missing_key_is_an_error_naming_it(tmp_path):
    # params.yaml is the one place values live: nothing falls back to a value written in code
    document = yaml.safe_load((ROOT / "params.yaml").read_text())
    del document["train"]["small_cnn"]["dropout"], document["split"]["seed"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(PipelineError, match=r"^missing key\(s\) train.small_cnn.dropout in params.yaml$"):
        load("train", tmp_path / "params.yaml")
    with pytest.raises(PipelineError, match=r"^missing key\(s\) split.seed in params.yaml$"):
        load("split", tmp_path / "params.yaml")
    with pytest.raises(PipelineError, match="params.yaml: not found"):
        load("split", tmp_path / "elsewhere/params.yaml")


def test_ints_are_accepted_as_floats(tmp_path):
    p = load("split", write(tmp_path, {"split": {"test_size": 0.25, "seed": 3}}))
    assert (p.test_size, p.seed) == (0.25, 3)
    assert load("unzip", write(tmp_path, {"unzip": {"valence_threshold": 4}})).valence_threshold == 4.0


def test_nested_section_is_parsed(tmp_path):
    p = load("train", write(tmp_path, {"train": {"augment": {"zoom": 0.3, "horizontal_flip": False}}}))
    assert p.augment.zoom == 0.3 and p.augment.horizontal_flip is False
    assert p.augment.rotation_degrees == repo_params("train").augment.rotation_degrees


def test_the_chosen_model_takes_its_own_section(tmp_path):
    document = {"train": {"model": "small_cnn", "small_cnn": {"epochs": 7}, "fine_tune": {"epochs": 3}}}
    p = load("train", write(tmp_path, document))
    assert p.hyper == dataclasses.replace(repo_params("train").small_cnn, epochs=7) and p.section == "small_cnn"
    assert p.using("mobilenet_v2").hyper.epochs == 3  # the other sections are kept, not lost
    assert p.using("seed_baseline", epochs=2).hyper == dataclasses.replace(p.seed_baseline, epochs=2)


def test_every_backbone_takes_fine_tune_at_the_size_the_registry_gives_it(tmp_path):
    p = load("train", write(tmp_path, {"train": {"model": "efficientnet_lite2", "fine_tune": {"epochs": 4}}}))
    assert p.section == "fine_tune"
    assert (p.hyper.epochs, p.hyper.image_height, p.hyper.image_width) == (4, 260, 325)  # Lite2's native 260, 4:5
    assert (p.using("efficientnet_lite0").hyper.image_height, p.using("efficientnet_lite0").hyper.image_width) == (224, 280)
    assert p.using("mobilenet_v2").hyper.image_width == 400  # the default it had before issue 45
    small = p.using("efficientnet_lite0", image_height=64, image_width=80, fine_tune_blocks=2)  # tests, benchmarks
    assert (small.hyper.image_height, small.hyper.image_width, small.hyper.fine_tune_blocks) == (64, 80, 2)
    assert small.fine_tune.epochs == 4 and small.using("small_cnn").hyper == p.small_cnn


def test_fine_tune_blocks_is_checked_against_the_chosen_backbone_only(tmp_path):
    blocks = {"fine_tune": {"fine_tune_blocks": 20}}
    assert load("train", write(tmp_path, {"train": {"model": "frozen", **blocks}})).fine_tune.fine_tune_blocks == 20
    assert load("train", write(tmp_path, {"train": {"model": "efficientnet_lite2", **blocks}})).hyper.fine_tune_blocks == 20
    with pytest.raises(PipelineError, match=r"^train.fine_tune.fine_tune_blocks must be between 1 and 15 "
                                            r"\(efficientnet_lite0's blocks\), got 20$"):
        load("train", write(tmp_path, {"train": {"model": "efficientnet_lite0", **blocks}}))


def test_patience_without_validation_is_fine_for_a_model_that_does_not_stop_early(tmp_path):
    for model in ("seed_baseline", "small_cnn"):
        document = {"train": {"model": model, "validation_size": 0}}
        assert load("train", write(tmp_path, document)).hyper.patience == 0


def test_frozen_lists_become_tuples_and_name_the_extractors(tmp_path):
    p = load("train", write(tmp_path, {"train": {"model": "frozen", "frozen": {"regularization": [1, 0.5]}}}))
    assert p.hyper.regularization == (1.0, 0.5) and p.hyper.backbones == ("efficientnet_lite2", "mobilenet_v2")
    assert p.hyper.extractors() == [("efficientnet_lite2", 260, 325, (20, 15)), ("mobilenet_v2", 224, 224, ())]


@pytest.mark.parametrize("document, message", [
    ({"train": {"epoch": 3}}, "unknown key(s) train.epoch"),
    ({"train": {"augment": {"zoom_range": 0.1}}}, "train.augment.zoom_range"),
    ({"trian": {}}, "unknown section(s) trian"),
    ({"split": {"test_size": 0}}, "split.test_size"),
    ({"split": {"test_size": 1.0}}, "split.test_size"),
    ({"split": {"test_size": "0.2"}}, "split.test_size must be of type float"),
    ({"split": {"seed": 1.5}}, "split.seed must be of type int"),
    ({"train": {"epochs": 10}}, "unknown key(s) train.epochs"),  # epochs belong to a model's own section
    ({"train": {"small_cnn": {"epochs": 0}}}, "train.small_cnn.epochs must be >= 1"),
    ({"train": {"fine_tune": {"epochs": True}}}, "train.fine_tune.epochs must be an integer"),
    ({"train": {"model": "mobilenet_v2", "fine_tune": {"fine_tune_blocks": 17}}}, "train.fine_tune.fine_tune_blocks"),
    ({"train": {"model": "efficientnet_lite2", "fine_tune": {"fine_tune_blocks": 21}}},
     "train.fine_tune.fine_tune_blocks must be between 1 and 20 (efficientnet_lite2's blocks), got 21"),
    ({"train": {"fine_tune": {"fine_tune_blocks": 0}}}, "train.fine_tune.fine_tune_blocks must be >= 1, got 0"),
    ({"train": {"fine_tune": {"learning_rate_decay": "step"}}}, "train.fine_tune.learning_rate_decay must be one of"),
    ({"train": {"fine_tune": {"dropout": 1}}}, "train.fine_tune.dropout must be in [0, 1)"),
    ({"train": {"fine_tune": {"image_height": 224}}}, "unknown key(s) train.fine_tune.image_height"),  # the registry's
    ({"train": {"mobilenet_v2": {"epochs": 3}}}, "unknown key(s) train.mobilenet_v2"),  # no section per backbone
    ({"train": {"image_size": [64, 80]}}, "unknown key(s) train.image_size"),  # set in code only (using)
    ({"train": {"small_cnn": {"fine_tune_blocks": 2}}}, "unknown key(s) train.small_cnn.fine_tune_blocks"),
    ({"train": {"small_cnn": {"dropout": 1.0}}}, "train.small_cnn.dropout must be in [0, 1)"),
    ({"train": {"seed_baseline": {"learning_rate_decay": "step"}}}, "train.seed_baseline.learning_rate_decay must be one of"),
    ({"train": {"seed_baseline": {"image_width": 8}}}, "train.seed_baseline.image_width must be >= 32"),
    ({"train": {"model": "mobilenet_v2", "validation_size": 0}}, "train.fine_tune.patience needs a validation slice"),
    ({"train": {"model": "resnet9000"}}, "train.model must be one of"),
    ({"train": {"augment": {"zoom": 1.5}}}, "train.augment.zoom must be < 1"),
    ({"train": {"augment": {"fill_mode": "mirror"}}}, "train.augment.fill_mode"),
    ({"train": {"augment": 3}}, "train.augment must be a mapping"),
    ({"unzip": {"layout": "folders"}}, "unzip.layout"),
    ({"download": {"source": "ftp"}}, "download.source"),
    ({"download": {"sha256": "abc"}}, "download.sha256"),
    ({"evaluate": {"threshold": 1}}, "evaluate.threshold"),
    ({"train": {"frozen": {"backbones": "mobilenet_v2"}}}, "train.frozen.backbones must be a list"),
    ({"train": {"frozen": {"backbones": []}}}, "train.frozen.backbones must name at least one"),
    ({"train": {"frozen": {"backbones": ["resnet50"]}}}, "train.frozen.backbones must be one of"),
    ({"train": {"frozen": {"pooled_blocks": [21]}}}, "train.frozen.pooled_blocks must be between 0 and 20, got 21"),
    ({"train": {"frozen": {"pooled_blocks": [1.5]}}}, "train.frozen.pooled_blocks[0] must be of type int"),
    ({"train": {"frozen": {"regularization": [0.001, 0]}}}, "train.frozen.regularization must list C values > 0"),
    ({"train": {"frozen": {"regularization": ["a"]}}}, "train.frozen.regularization[0] must be of type float"),
    ({"train": {"frozen": {"views": 0}}}, "train.frozen.views must be >= 1"),
])
def test_bad_values_are_one_line_errors(tmp_path, document, message):
    section = next(iter(document))
    section = section if section in (*params.SECTIONS, "train") else "split"
    with pytest.raises(PipelineError) as err:
        load(section, write(tmp_path, document))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("split: [unclosed\n")
    with pytest.raises(PipelineError, match="params.yaml: not valid YAML"):
        load("split", path)
