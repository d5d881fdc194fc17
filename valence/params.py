"""params.yaml, one section per stage: typed, range-checked, and strict about unknown and missing keys.

params.yaml is the one place values live (with a comment on each); these classes give their types and ranges.
`dvc exp run -S train.epoch=3` (a typo) would otherwise be accepted silently, so every key must be known, and
every key must be there, so no value hides in code.
"""
import dataclasses
import ipaddress
import typing
from pathlib import Path

import yaml

from valence.errors import PipelineError

PARAMS_FILE = Path("params.yaml")
TRAIN = "train"  # its section lives in valence.train_params: its checks read the model registry
CODE_ONLY = {"code_only": True}  # metadata of a dataclass field that params.yaml never sets
from valence.config import RAW as DOWNLOADED  # the download stage's folder: the archive it fetched or generated


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
        one_of("download.source", self.source, ("url", "demo", "path"))
        if self.source == "path" and Path(self.path) == DOWNLOADED:
            raise PipelineError("download.source path needs download.path: your folder of photos or .zip archive "
                                "(docs/guide.md: Your own photos)")
        if self.source != "path" and Path(self.path) != DOWNLOADED:
            raise PipelineError(f"download.path must be {DOWNLOADED} for download.source {self.source} (where it "
                                f"puts the archive); got {self.path!r}")
        if not self.filename or "/" in self.filename or not self.filename.endswith(".zip"):
            raise PipelineError(f"download.filename must be a plain file name ending in .zip, got {self.filename!r}")
        if self.sha256 is not None and (len(self.sha256) != 64 or not all(c in "0123456789abcdef" for c in self.sha256.lower())):
            raise PipelineError(f"download.sha256 must be 64 hex digits or null, got {self.sha256!r}")
        at_least("download.demo_images_per_class", self.demo_images_per_class, 2)
        at_least("download.demo_height", self.demo_height, 16)
        at_least("download.demo_width", self.demo_width, 16)


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
        one_of("unzip.layout", self.layout, ("auto", "rated_csv", "labels_csv", "class_folders"))
        if self.rating_column is not None and not self.rating_column.strip():
            raise PipelineError("unzip.rating_column must name a column or be null")
        if self.arousal_column is not None and not self.arousal_column.strip():
            raise PipelineError("unzip.arousal_column must name a column or be null")
        if self.rating_scale and (len(self.rating_scale) != 2 or self.rating_scale[0] >= self.rating_scale[1]):
            raise PipelineError(f"unzip.rating_scale must be [low, high] with low < high, or [], "
                                f"got {list(self.rating_scale)}")
        at_least("unzip.neutral_margin", self.neutral_margin, 0)
        at_least("unzip.max_total_mb", self.max_total_mb, 1)
        at_least("unzip.max_compression_ratio", self.max_compression_ratio, 1)


@dataclasses.dataclass(frozen=True)
class AuditParams:
    near_duplicate_bits: int  # pHash bits (of 64) two near-copies may differ in
    dark_below: float  # mean brightness (0–1) under which an image is flagged dark
    blurry_below: float  # Laplacian variance (at 256 px) under which an image is flagged blurry
    min_side: int  # pixels: a shorter side is flagged tiny
    max_aspect: float  # longer side / shorter side above this is flagged odd

    def check(self):
        between("audit.near_duplicate_bits", self.near_duplicate_bits, 0, 32)
        between("audit.dark_below", self.dark_below, 0, 1)
        at_least("audit.blurry_below", self.blurry_below, 0)
        at_least("audit.min_side", self.min_side, 1)
        at_least("audit.max_aspect", self.max_aspect, 1)


@dataclasses.dataclass(frozen=True)
class SplitParams:
    test_size: float  # each fold's share: round(1 / test_size) folds, each scored by a model trained on the others
    seed: int
    group_by: str  # concept: no concept or near-copy on both sides; none: image by image (leaky)
    tolerance: float  # a group may hold at most 1 / folds + this share of the images (else no even folds)

    def check(self):
        inside_0_1("split.test_size", self.test_size)
        inside_0_1("split.tolerance", self.tolerance)
        one_of("split.group_by", self.group_by, ("concept", "none"))


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    threshold: float  # P(Positive) at or above this is called Positive
    batch_size: int  # inference only
    flip_average: bool  # mean P(Positive) of the image and its mirror image
    photo_threshold: float  # P(photo) below this: "not a photo" (the photo check, folded into its head: 0.5 there; docs/model-card.md)
    uncertain_band: float  # |P(Positive) − threshold| below this: the label is Uncertain; 0: always a class

    def check(self):
        inside_0_1("evaluate.threshold", self.threshold)
        if not 0 <= self.uncertain_band < 0.5:
            raise PipelineError(f"evaluate.uncertain_band must be in [0, 0.5), got {self.uncertain_band}")
        inside_0_1("evaluate.photo_threshold", self.photo_threshold)
        at_least("evaluate.batch_size", self.batch_size, 1)


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
        at_least("non_photos.per_kind", self.per_kind, 0)


@dataclasses.dataclass(frozen=True)
class ExportParams:
    tolerance: float  # largest |P(Positive) LiteRT − Keras| on the test images before the stage fails
    photos: int  # fold 0's first test photos the three readers are compared on (all of them, if fewer)
    batch_size: int  # images scored at once in the comparison

    def check(self):
        inside_0_1("export.tolerance", self.tolerance)
        at_least("export.photos", self.photos, 1)
        at_least("export.batch_size", self.batch_size, 1)


@dataclasses.dataclass(frozen=True)
class ServeParams:
    max_request_mb: float  # larger request bodies are refused (413) before they are read
    max_images: int  # images in one POST /predict or /explain
    max_explain: int  # images in one POST /explain of a model explained by occlusion: 50 forward passes each (100 flipped)
    max_batch: int  # images the inference thread scores at once, gathered from concurrent requests
    max_concurrent: int  # /predict and /explain requests worked on at once (read, decoded, scored)
    max_queued: int  # requests waiting for one of those slots; beyond, 503 with Retry-After at once
    deadline_s: float  # a /predict or /explain taking longer (waiting included) is cancelled: 504
    read_timeout_s: float  # a client has this long for a request's headers, and again for its body (408)
    max_request_megapixels: float  # pixels of one request's images in all, read from their headers (413 beyond)
    max_decoding_megapixels: float  # pixels being decoded at once, all requests together: bounds decoding memory
    max_connections: int  # open connections (uvicorn's limit_concurrency); beyond, 503 even for /healthz
    keep_alive_s: float  # an idle keep-alive connection is closed after this (uvicorn's timeout_keep_alive)
    allowed_hosts: tuple[str, ...]  # Host header names besides localhost, 127.0.0.1, ::1 and --host; "*": any
    allowed_origins: tuple[str, ...]  # web origins whose pages may call the service (CORS); []: same origin only

    def check(self):
        for name in ("max_request_mb", "deadline_s", "read_timeout_s", "max_request_megapixels",
                     "max_decoding_megapixels", "keep_alive_s"):
            if not getattr(self, name) > 0:
                raise PipelineError(f"serve.{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_images", "max_explain", "max_batch", "max_concurrent"):
            at_least(f"serve.{name}", getattr(self, name), 1)
        at_least("serve.max_queued", self.max_queued, 0)
        if self.max_connections <= self.max_concurrent + self.max_queued:
            raise PipelineError(f"serve.max_connections must be more than serve.max_concurrent + serve.max_queued ("
                                f"{self.max_concurrent + self.max_queued}: room for /healthz), got {self.max_connections}")
        for host in self.allowed_hosts:
            if not host or any(c in host for c in "/[] \t") or ":" in host and not is_ip_address(host):
                raise PipelineError(f"serve.allowed_hosts: {host!r} is not a host name (no scheme, port or path; "
                                    "e.g. valence.example.com, or \"*\")")
        for origin in self.allowed_origins:
            scheme, _, rest = origin.partition("://")
            if origin != "*" and (scheme not in ("http", "https") or not rest or "/" in rest):
                raise PipelineError(f"serve.allowed_origins: {origin!r} is not an origin "
                                    "(scheme://host[:port], e.g. https://app.example.com, or \"*\")")


SECTIONS = {
    "download": DownloadParams,
    "unzip": UnzipParams,
    "audit": AuditParams,
    "split": SplitParams,
    "non_photos": NonPhotosParams,
    "evaluate": EvaluateParams,
    "export": ExportParams,
    "serve": ServeParams,  # python -m valence serve (not a stage)
}


def is_ip_address(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def one_of(name, value, allowed):
    if value not in allowed:
        raise PipelineError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def inside_0_1(name, value):
    if not 0 < value < 1:
        raise PipelineError(f"{name} must be between 0 and 1 (exclusive), got {value}")


def between(name, value, low, high):
    if not low <= value <= high:
        raise PipelineError(f"{name} must be between {low} and {high}, got {value}")


def at_least(name, value, low):
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
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("code_only")}
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
    unknown = sorted(set(document) - {*SECTIONS, TRAIN})
    if unknown:
        raise PipelineError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join([*SECTIONS, TRAIN])}")
    return document


def load(section, path=None, cls=None):
    """Load and validate one section of params.yaml: every key of the section must be there. The train section
    is ``valence.train_params.load``'s (its checks read the model registry, which no other stage needs)."""
    if section not in SECTIONS and cls is None:
        raise ValueError(f"params.load({section!r}): load train through valence.train_params.load")
    params = parse(cls or SECTIONS[section], read(path).get(section), section)
    params.check()
    return params
