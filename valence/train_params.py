"""params.yaml's train section: the models train.model can name and each one's settings, typed and checked
against the model registry (valence.registry). Apart from valence.params so that the stages which never train
(download … split, non_photos) do not depend on the registry: adding a backbone re-runs nothing before features.

    p = train_params.load()   # the chosen model, its settings (p.hyper), the frozen recipe's extractors …
"""
import dataclasses
import typing

from valence.errors import PipelineError
from valence.params import CODE_ONLY, TRAIN, at_least, between, load as load_section, one_of
from valence.registry import BACKBONES, FROZEN_MODEL, MODEL_NAMES, OWN_MODELS


def _check_recipe(prefix, p):
    """What every trained model's settings share: epochs, learning rate and its decay, patience."""
    one_of(f"{prefix}.learning_rate_decay", p.learning_rate_decay, ("none", "cosine"))
    at_least(f"{prefix}.epochs", p.epochs, 1)
    at_least(f"{prefix}.patience", p.patience, 0)
    if not p.learning_rate > 0:
        raise PipelineError(f"{prefix}.learning_rate must be > 0, got {p.learning_rate}")


def _check_regularization(prefix, p):
    if not 0 <= p.dropout < 1:
        raise PipelineError(f"{prefix}.dropout must be in [0, 1), got {p.dropout}")
    if p.weight_decay < 0:
        raise PipelineError(f"{prefix}.weight_decay must be >= 0, got {p.weight_decay}")


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
        one_of("train.augment.fill_mode", self.fill_mode, ("nearest", "reflect", "wrap", "constant"))


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """An own model's section of train (seed_baseline has only this); the backbones' is FineTuneParams."""
    image_height: int
    image_width: int
    epochs: int  # early stopping may end training sooner
    learning_rate: float
    learning_rate_decay: str  # none | cosine: down to 0 over each phase's epochs
    patience: int  # early stopping: epochs without a better validation AUC; 0 turns it off

    def check(self, prefix):
        _check_recipe(prefix, self)
        at_least(f"{prefix}.image_height", self.image_height, 32)
        at_least(f"{prefix}.image_width", self.image_width, 32)


@dataclasses.dataclass(frozen=True)
class RegularizedParams(ModelParams):
    """The models of this project's own design add dropout and L2 weight decay (small_cnn has only this)."""
    dropout: float  # before the output unit
    weight_decay: float  # L2 on the head (pretrained models) or on every kernel (small_cnn)

    def check(self, prefix):
        super().check(prefix)
        _check_regularization(prefix, self)


@dataclasses.dataclass(frozen=True)
class FineTuneParams:
    """train.fine_tune: the one recipe of every ImageNet backbone in valence.registry, each at its own image size
    (Backbone.photo_size), so a new backbone needs no section of its own. The new head trains first on the
    frozen backbone (``epochs``), then the top blocks with it."""
    epochs: int  # phase 1: head only; early stopping may end it sooner
    learning_rate: float  # phase 1
    learning_rate_decay: str  # none | cosine: down to 0 over each phase's epochs
    fine_tune_epochs: int  # phase 2; 0 trains the head only
    fine_tune_learning_rate: float  # phase 2
    fine_tune_blocks: int  # how many of the backbone's top blocks unfreeze in phase 2 (at most its last_block)
    dropout: float  # before the output unit
    weight_decay: float  # L2 on the head
    patience: int  # early stopping: epochs without a better validation AUC; 0 turns it off
    cached_views: int  # augmented views per image whose frozen-block features are computed once; 0: none

    def check(self, prefix):  # fine_tune_blocks' upper bound is the chosen backbone's: TrainParams.check
        _check_recipe(prefix, self)
        _check_regularization(prefix, self)
        at_least(f"{prefix}.fine_tune_epochs", self.fine_tune_epochs, 0)
        if not self.fine_tune_learning_rate > 0:
            raise PipelineError(f"{prefix}.fine_tune_learning_rate must be > 0, got {self.fine_tune_learning_rate}")
        at_least(f"{prefix}.fine_tune_blocks", self.fine_tune_blocks, 1)
        at_least(f"{prefix}.cached_views", self.cached_views, 0)

    def at_size(self, height, width):
        """These settings for a backbone trained on height × width images: what TrainParams.hyper gives."""
        return PretrainedParams(**dataclasses.asdict(self), image_height=height, image_width=width)


@dataclasses.dataclass(frozen=True)
class PretrainedParams(FineTuneParams):
    """A backbone's settings, TrainParams.hyper: train.fine_tune at the image size the registry gives it."""
    image_height: int
    image_width: int


@dataclasses.dataclass(frozen=True)
class FrozenParams:
    """Heads on frozen ImageNet features (valence.learn.features, valence.learn.heads): no backbone
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
            one_of(f"{prefix}.backbones", name, tuple(BACKBONES))
        at_least(f"{prefix}.image_height", self.image_height, 32)
        at_least(f"{prefix}.image_width", self.image_width, 32)
        first = BACKBONES[self.backbones[0]]
        for block in self.pooled_blocks:
            between(f"{prefix}.pooled_blocks", block, first.first_block, first.last_block)
        at_least(f"{prefix}.views", self.views, 1)
        if not self.regularization or min(self.regularization) <= 0:
            raise PipelineError(f"{prefix}.regularization must list C values > 0, got {list(self.regularization)}")
        at_least(f"{prefix}.inner_folds", self.inner_folds, 2)
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
    model: str  # a registry backbone (train.fine_tune applies), an own model or frozen (its section applies)
    batch_size: int
    class_weight: str  # balanced: weigh classes by inverse frequency; none
    calibrate: bool  # beta-calibrate the released P(Positive) on the fold stages' out-of-fold predictions
    validation_size: float  # carved from the training split for early stopping; never the test split
    seed: int  # weight init, shuffling, augmentation
    precision: str  # float32 | mixed_bfloat16
    jit_compile: bool  # XLA
    op_determinism: bool  # TensorFlow's deterministic kernels
    augment: AugmentParams  # shared by all models
    fine_tune: FineTuneParams  # every registry backbone's recipe
    small_cnn: RegularizedParams
    seed_baseline: ModelParams
    frozen: FrozenParams
    # not in params.yaml: a backbone's (height, width) in place of the registry's, set by ``using`` (tests, benchmarks)
    image_size: typing.Optional[tuple[int, int]] = dataclasses.field(default=None, metadata=CODE_ONLY)

    @property
    def section(self):
        """The key under train that holds the chosen model's settings: fine_tune for every backbone."""
        return "fine_tune" if self.model in BACKBONES else self.model

    @property
    def hyper(self):
        """The chosen model's settings: its own section, or train.fine_tune at the backbone's image size."""
        if self.model not in BACKBONES:
            return getattr(self, self.model)
        return self.fine_tune.at_size(*(self.image_size or BACKBONES[self.model].photo_size))

    def using(self, model, **hyper):
        """A copy that trains ``model`` with some of its settings changed (for tests and benchmarks); for a backbone,
        image_height and image_width replace the size the registry gives it."""
        if model not in BACKBONES:
            return dataclasses.replace(self, model=model, **{model: dataclasses.replace(getattr(self, model), **hyper)})
        height, width = hyper.pop("image_height", None), hyper.pop("image_width", None)
        size = self.image_size
        if height or width:
            size = (height or BACKBONES[model].photo_size[0], width or BACKBONES[model].photo_size[1])
        return dataclasses.replace(self, model=model, fine_tune=dataclasses.replace(self.fine_tune, **hyper),
                                   image_size=size)

    def check(self):
        one_of("train.model", self.model, sorted((*MODEL_NAMES, FROZEN_MODEL)))
        at_least("train.batch_size", self.batch_size, 1)
        one_of("train.class_weight", self.class_weight, ("balanced", "none"))
        one_of("train.precision", self.precision, ("float32", "mixed_bfloat16"))
        if not 0 <= self.validation_size < 1:
            raise PipelineError(f"train.validation_size must be in [0, 1), got {self.validation_size}")
        for section in ("fine_tune", *OWN_MODELS, FROZEN_MODEL):
            getattr(self, section).check(f"train.{section}")
        if self.model in BACKBONES and self.fine_tune.fine_tune_blocks > BACKBONES[self.model].last_block:
            raise PipelineError(f"train.fine_tune.fine_tune_blocks must be between 1 and "
                                f"{BACKBONES[self.model].last_block} ({self.model}'s blocks), "
                                f"got {self.fine_tune.fine_tune_blocks}")
        if getattr(self.hyper, "patience", 0) and not self.validation_size:
            raise PipelineError(f"train.{self.section}.patience needs a validation slice: "
                                "set train.validation_size > 0 or the patience to 0")
        self.augment.check()


def load(path=None):
    """The train section of params.yaml (``path``, by default the project's), typed and checked."""
    return load_section(TRAIN, path, TrainParams)
