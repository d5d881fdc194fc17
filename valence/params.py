"""params.yaml, one section per stage: typed, range-checked, and strict about unknown and missing keys.

params.yaml is the one place values live (with a comment on each); these classes give their types and ranges.
`dvc exp run -S train.epoch=3` (a typo) would otherwise be accepted silently, so every key must be known, and
every key must be there, so no value hides in code.
"""
import dataclasses
import typing
from pathlib import Path

import yaml

from valence.errors import PipelineError
from valence.registry import BACKBONES, FROZEN_MODEL, MODEL_NAMES

PARAMS_FILE = Path("params.yaml")
DOWNLOADED = Path("data/raw")  # the download stage's folder: the archive it fetched or generated


@dataclasses.dataclass(frozen=True)
class DownloadParams:
    source: str  # url: fetch `url` (or use the Keras-cache copy); demo: generate synthetic faces; path: your own
    path: str  # what unzip reads: data/raw (url, demo) or, for source path, your folder or .zip (read in place)
    url: str
    filename: str  # name in data/raw and Keras' cache
    sha256: typing.Optional[str]  # checked when set
    demo_images_per_class: int
    demo_height: int
    demo_width: int
    demo_seed: int

    def check(self):
        _one_of("download.source", self.source, ("url", "demo", "path"))
        if self.source == "path" and Path(self.path) == DOWNLOADED:
            raise PipelineError("download.source path needs download.path: your folder of photos or .zip archive "
                                "(README: Your own photos)")
        if self.source != "path" and Path(self.path) != DOWNLOADED:
            raise PipelineError(f"download.path must be {DOWNLOADED} for download.source {self.source} (where it "
                                f"puts the archive); got {self.path!r}")
        if not self.filename or "/" in self.filename or not self.filename.endswith(".zip"):
            raise PipelineError(f"download.filename must be a plain file name ending in .zip, got {self.filename!r}")
        if self.sha256 is not None and (len(self.sha256) != 64 or not all(c in "0123456789abcdef" for c in self.sha256.lower())):
            raise PipelineError(f"download.sha256 must be 64 hex digits or null, got {self.sha256!r}")
        _at_least("download.demo_images_per_class", self.demo_images_per_class, 2)
        _at_least("download.demo_height", self.demo_height, 16)
        _at_least("download.demo_width", self.demo_width, 16)


@dataclasses.dataclass(frozen=True)
class UnzipParams:
    layout: str  # auto | rated_csv (OASIS) | labels_csv (path + label or rating) | class_folders (Negative/, Positive/)
    rating_column: typing.Optional[str]  # labels_csv: label from this numeric column (else from its label column)
    arousal_column: typing.Optional[str]  # labels_csv: the arousal rating, learnt beside valence (null: none)
    rating_scale: tuple[float, ...]  # [low, high] of the rating questionnaire; []: the rated range, whole numbers
    valence_threshold: float  # neutral point of the rating scale (OASIS: 1–7)
    neutral_margin: float  # ratings within threshold ± margin are dropped as ambiguous
    max_total_mb: int  # zip-bomb guard: refuse archives that unpack to more
    max_compression_ratio: float  # zip-bomb guard for members of 1 MiB or more

    def check(self):
        _one_of("unzip.layout", self.layout, ("auto", "rated_csv", "labels_csv", "class_folders"))
        if self.rating_column is not None and not self.rating_column.strip():
            raise PipelineError("unzip.rating_column must name a column or be null")
        if self.arousal_column is not None and not self.arousal_column.strip():
            raise PipelineError("unzip.arousal_column must name a column or be null")
        if self.rating_scale and (len(self.rating_scale) != 2 or self.rating_scale[0] >= self.rating_scale[1]):
            raise PipelineError(f"unzip.rating_scale must be [low, high] with low < high, or [], "
                                f"got {list(self.rating_scale)}")
        _at_least("unzip.neutral_margin", self.neutral_margin, 0)
        _at_least("unzip.max_total_mb", self.max_total_mb, 1)
        _at_least("unzip.max_compression_ratio", self.max_compression_ratio, 1)


@dataclasses.dataclass(frozen=True)
class AuditParams:
    near_duplicate_bits: int  # pHash bits (of 64) two near-copies may differ in
    dark_below: float  # mean brightness (0–1) under which an image is flagged dark
    blurry_below: float  # Laplacian variance (at 256 px) under which an image is flagged blurry
    min_side: int  # pixels: a shorter side is flagged tiny
    max_aspect: float  # longer side / shorter side above this is flagged odd

    def check(self):
        _between("audit.near_duplicate_bits", self.near_duplicate_bits, 0, 32)
        _between("audit.dark_below", self.dark_below, 0, 1)
        _at_least("audit.blurry_below", self.blurry_below, 0)
        _at_least("audit.min_side", self.min_side, 1)
        _at_least("audit.max_aspect", self.max_aspect, 1)


@dataclasses.dataclass(frozen=True)
class SplitParams:
    test_size: float  # each fold's share: round(1 / test_size) folds, each scored by a model trained on the others
    seed: int
    group_by: str  # concept: no concept or near-copy on both sides; none: image by image (leaky)
    tolerance: float  # a group may hold at most 1 / folds + this share of the images (else no even folds)

    def check(self):
        _inside_0_1("split.test_size", self.test_size)
        _inside_0_1("split.tolerance", self.tolerance)
        _one_of("split.group_by", self.group_by, ("concept", "none"))


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    rotation_degrees: float  # random rotation in ±degrees
    width_shift: float  # random horizontal shift, fraction of the width
    height_shift: float  # random vertical shift, fraction of the height
    shear_degrees: float  # ImageDataGenerator's shear_range is in degrees
    zoom: float  # zoom in/out by up to this fraction, each axis independently
    horizontal_flip: bool
    fill_mode: str  # how pixels moved in from outside the image are filled

    def check(self):
        for name in ("rotation_degrees", "width_shift", "height_shift", "shear_degrees", "zoom"):
            if getattr(self, name) < 0:
                raise PipelineError(f"train.augment.{name} must be >= 0, got {getattr(self, name)}")
        if self.rotation_degrees > 180 or self.shear_degrees >= 90:
            raise PipelineError("train.augment.rotation_degrees must be <= 180 and shear_degrees < 90")
        for name in ("width_shift", "height_shift", "zoom"):
            if getattr(self, name) >= 1:
                raise PipelineError(f"train.augment.{name} must be < 1, got {getattr(self, name)}")
        _one_of("train.augment.fill_mode", self.fill_mode, ("nearest", "reflect", "wrap", "constant"))


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """What every model's section of train has (seed_baseline has only this)."""
    image_height: int
    image_width: int
    epochs: int  # early stopping may end training sooner
    learning_rate: float
    learning_rate_decay: str  # none | cosine: down to 0 over each phase's epochs
    patience: int  # early stopping: epochs without a better validation AUC; 0 turns it off

    def check(self, prefix):
        _one_of(f"{prefix}.learning_rate_decay", self.learning_rate_decay, ("none", "cosine"))
        _at_least(f"{prefix}.image_height", self.image_height, 32)
        _at_least(f"{prefix}.image_width", self.image_width, 32)
        _at_least(f"{prefix}.epochs", self.epochs, 1)
        _at_least(f"{prefix}.patience", self.patience, 0)
        if not self.learning_rate > 0:
            raise PipelineError(f"{prefix}.learning_rate must be > 0, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class RegularizedParams(ModelParams):
    """The models of this project's own design add dropout and L2 weight decay (small_cnn has only this)."""
    dropout: float  # before the output unit
    weight_decay: float  # L2 on the head (pretrained models) or on every kernel (small_cnn)

    def check(self, prefix):
        super().check(prefix)
        if not 0 <= self.dropout < 1:
            raise PipelineError(f"{prefix}.dropout must be in [0, 1), got {self.dropout}")
        if self.weight_decay < 0:
            raise PipelineError(f"{prefix}.weight_decay must be >= 0, got {self.weight_decay}")


@dataclasses.dataclass(frozen=True)
class PretrainedParams(RegularizedParams):
    """An ImageNet backbone with a new head: the head trains first on the frozen backbone (``epochs``), then the
    top blocks."""
    fine_tune_epochs: int  # phase 2; 0 trains the head only
    fine_tune_learning_rate: float
    fine_tune_blocks: int  # how many of the backbone's top blocks unfreeze in phase 2
    cached_views: int  # augmented views per image whose frozen-block features are computed once; 0: none

    def check(self, prefix):
        super().check(prefix)
        _at_least(f"{prefix}.fine_tune_epochs", self.fine_tune_epochs, 0)
        if not self.fine_tune_learning_rate > 0:
            raise PipelineError(f"{prefix}.fine_tune_learning_rate must be > 0, got {self.fine_tune_learning_rate}")
        most = BACKBONES[prefix.rpartition(".")[2]].last_block
        if not 1 <= self.fine_tune_blocks <= most:
            raise PipelineError(f"{prefix}.fine_tune_blocks must be between 1 and {most}, got {self.fine_tune_blocks}")
        _at_least(f"{prefix}.cached_views", self.cached_views, 0)


@dataclasses.dataclass(frozen=True)
class FrozenParams:
    """Heads on frozen ImageNet features (valence.learn.features, valence.learn.logistic_head): no backbone
    trains. The features stage computes the features once; the head is a standardised logistic regression."""
    backbones: tuple[str, ...]  # extractors whose pooled features are concatenated (registry.BACKBONES)
    image_height: int  # the first backbone's input; the others get the image resized inside to their native_size
    image_width: int
    pooled_blocks: tuple[int, ...]  # blocks of the first backbone pooled beside its last feature map
    views: int  # the head trains on the mean features of: 1 the photo; 2 and its mirror; more, augmented copies
    regularization: tuple[float, ...]  # logistic regression's C candidates, chosen by grouped inner CV
    inner_folds: int  # grouped folds of the training images that choose C (and the rating heads' α)
    rating_alphas: tuple[float, ...]  # ridge α candidates of the valence and arousal heads, chosen by grouped inner CV
    combine_valence: bool  # P(Positive) from the classifier and the valence head together (rated data only)
    photo_check_c: float  # C of the photo check: photos against generated non-photos (valence.learn.photo_check)

    def check(self, prefix):
        if not self.backbones:
            raise PipelineError(f"{prefix}.backbones must name at least one of {', '.join(BACKBONES)}")
        for name in self.backbones:
            _one_of(f"{prefix}.backbones", name, tuple(BACKBONES))
        _at_least(f"{prefix}.image_height", self.image_height, 32)
        _at_least(f"{prefix}.image_width", self.image_width, 32)
        first = BACKBONES[self.backbones[0]]
        for block in self.pooled_blocks:
            _between(f"{prefix}.pooled_blocks", block, first.first_block, first.last_block)
        _at_least(f"{prefix}.views", self.views, 1)
        if not self.regularization or min(self.regularization) <= 0:
            raise PipelineError(f"{prefix}.regularization must list C values > 0, got {list(self.regularization)}")
        _at_least(f"{prefix}.inner_folds", self.inner_folds, 2)
        if not self.rating_alphas or min(self.rating_alphas) <= 0:
            raise PipelineError(f"{prefix}.rating_alphas must list α values > 0, got {list(self.rating_alphas)}")
        if not self.photo_check_c > 0:
            raise PipelineError(f"{prefix}.photo_check_c must be > 0, got {self.photo_check_c}")

    def extractors(self):
        """[(backbone, height, width, pooled blocks)] for valence.learn.features.combined_extractor."""
        return [(self.backbones[0], self.image_height, self.image_width, self.pooled_blocks),
                *[(name, BACKBONES[name].native_size, BACKBONES[name].native_size, ()) for name in self.backbones[1:]]]


@dataclasses.dataclass(frozen=True)
class TrainParams:
    model: str  # one of MODEL_NAMES or FROZEN_MODEL: its section below applies
    batch_size: int
    class_weight: str  # balanced: weigh classes by inverse frequency; none
    calibrate: bool  # Platt-scale the released P(Positive) on the fold stages' out-of-fold predictions
    validation_size: float  # carved from the training split for early stopping; never the test split
    seed: int  # weight init, shuffling, augmentation
    precision: str  # float32 | mixed_bfloat16
    jit_compile: bool  # XLA
    op_determinism: bool  # TensorFlow's deterministic kernels
    augment: AugmentParams  # shared by all models
    mobilenet_v2: PretrainedParams
    efficientnet_lite0: PretrainedParams
    efficientnet_lite2: PretrainedParams
    small_cnn: RegularizedParams
    seed_baseline: ModelParams
    frozen: FrozenParams

    @property
    def hyper(self):
        """The chosen model's own section."""
        return getattr(self, self.model)

    def using(self, model, **hyper):
        """A copy that trains ``model`` with some of its own params changed (for tests and benchmarks)."""
        return dataclasses.replace(self, model=model, **{model: dataclasses.replace(getattr(self, model), **hyper)})

    def check(self):
        _one_of("train.model", self.model, sorted((*MODEL_NAMES, FROZEN_MODEL)))
        _at_least("train.batch_size", self.batch_size, 1)
        _one_of("train.class_weight", self.class_weight, ("balanced", "none"))
        _one_of("train.precision", self.precision, ("float32", "mixed_bfloat16"))
        if not 0 <= self.validation_size < 1:
            raise PipelineError(f"train.validation_size must be in [0, 1), got {self.validation_size}")
        for model in (*MODEL_NAMES, FROZEN_MODEL):
            getattr(self, model).check(f"train.{model}")
        if getattr(self.hyper, "patience", 0) and not self.validation_size:
            raise PipelineError(f"train.{self.model}.patience needs a validation slice: "
                                "set train.validation_size > 0 or the patience to 0")
        self.augment.check()


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    threshold: float  # P(Positive) at or above this is called Positive
    batch_size: int  # inference only
    flip_average: bool  # mean P(Positive) of the image and its mirror image
    photo_threshold: float  # P(photo) below this: "not a photo" (the photo check; README: Not a photo?)

    def check(self):
        _inside_0_1("evaluate.threshold", self.threshold)
        _inside_0_1("evaluate.photo_threshold", self.photo_threshold)
        _at_least("evaluate.batch_size", self.batch_size, 1)


@dataclasses.dataclass(frozen=True)
class NonPhotosParams:
    kinds: tuple[str, ...]  # kinds of generated non-photo the photo check learns from (valence.data.non_photos.KINDS)
    per_kind: int  # images of each kind; 0: no photo check
    seed: int  # each image is drawn from its own generator, seeded by (seed, kind, index)

    def check(self):  # the kinds' names: checked by the non_photos stage, against valence.data.non_photos.KINDS
        if len(set(self.kinds)) != len(self.kinds):
            raise PipelineError(f"non_photos.kinds lists a kind twice: {list(self.kinds)}")
        if self.per_kind and len(self.kinds) < 2:
            raise PipelineError("non_photos.kinds must list at least 2 kinds (each is scored by a head trained "
                                "on the others), or set non_photos.per_kind to 0")
        _at_least("non_photos.per_kind", self.per_kind, 0)


@dataclasses.dataclass(frozen=True)
class ExportParams:
    tolerance: float  # largest |P(Positive) LiteRT − Keras| on the test images before the stage fails
    batch_size: int  # images scored at once in the comparison

    def check(self):
        _inside_0_1("export.tolerance", self.tolerance)
        _at_least("export.batch_size", self.batch_size, 1)


@dataclasses.dataclass(frozen=True)
class ServeParams:
    max_request_mb: float  # larger request bodies are refused (413) before they are read
    max_images: int  # images in one POST /predict
    max_batch: int  # images the inference thread scores at once, gathered from concurrent requests

    def check(self):
        if not self.max_request_mb > 0:
            raise PipelineError(f"serve.max_request_mb must be > 0, got {self.max_request_mb}")
        _at_least("serve.max_images", self.max_images, 1)
        _at_least("serve.max_batch", self.max_batch, 1)


SECTIONS = {
    "download": DownloadParams,
    "unzip": UnzipParams,
    "audit": AuditParams,
    "split": SplitParams,
    "non_photos": NonPhotosParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "export": ExportParams,
    "serve": ServeParams,  # python -m valence serve (not a stage)
}


def _one_of(name, value, allowed):
    if value not in allowed:
        raise PipelineError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _inside_0_1(name, value):
    if not 0 < value < 1:
        raise PipelineError(f"{name} must be between 0 and 1 (exclusive), got {value}")


def _between(name, value, low, high):
    if not low <= value <= high:
        raise PipelineError(f"{name} must be between {low} and {high}, got {value}")


def _at_least(name, value, low):
    if value < low:
        raise PipelineError(f"{name} must be >= {low}, got {value}")


def _coerce(name, value, annotation):
    """Check one value against its field type; ints are accepted where floats are expected."""
    if typing.get_origin(annotation) is tuple:  # tuple[X, ...]: a YAML list of X
        if not isinstance(value, list):
            raise PipelineError(f"{name} must be a list, got {value!r}")
        return tuple(_coerce(f"{name}[{i}]", item, typing.get_args(annotation)[0]) for i, item in enumerate(value))
    if annotation is typing.Optional[str]:
        if value is None or isinstance(value, str):
            return value
        raise PipelineError(f"{name} must be a string or null, got {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise PipelineError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise PipelineError(f"{name} must be of type {annotation.__name__}, got {value!r}")
    return value


def parse(cls, data, prefix):
    """Build dataclass ``cls`` from a dict, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PipelineError(f"{prefix} must be a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PipelineError(f"unknown key(s) {', '.join(f'{prefix}.{k}' for k in unknown)} in {PARAMS_FILE}; "
                            f"known: {', '.join(fields)}")
    missing = [name for name in fields if name not in data]
    if missing:
        raise PipelineError(f"missing key(s) {', '.join(f'{prefix}.{k}' for k in missing)} in {PARAMS_FILE}")
    values = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]):
            values[key] = parse(hints[key], value, f"{prefix}.{key}")
        else:
            values[key] = _coerce(f"{prefix}.{key}", value, hints[key])
    return cls(**values)


def read(path=None):
    """params.yaml as a mapping of sections, known ones only (their keys are checked by ``load``)."""
    path = Path(path or PARAMS_FILE)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run from the project's folder (the one with dvc.yaml)")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    document = document or {}
    if not isinstance(document, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(document).__name__}")
    unknown = sorted(set(document) - set(SECTIONS))
    if unknown:
        raise PipelineError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return document


def load(section, path=None):
    """Load and validate one section of params.yaml: every key of the section must be there."""
    params = parse(SECTIONS[section], read(path).get(section), section)
    params.check()
    return params
