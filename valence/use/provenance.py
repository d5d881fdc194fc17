"""Where a model file came from, for the rows and answers it gives: `valence predict`'s model_md5 and
model_source columns and sidecar, serve's "provenance".

    identity("models/model.tflite")  # {"md5", "file", "embedded", and where HEAD's dvc.lock records this very
                                     #  file: "revision", "artifact", "version"}
    source(identity(...))            # "valence-classifier-litert@v1.2.0", "git:0123456789ab" or ""
    embed("models/model.keras", {...}); embedded("models/model.keras")

Metadata embedded in the file itself travels with every copy of it: a ``.keras`` file (a zip archive) holds it
as the member valence.json, a ``.tflite`` file (a TFLite flatbuffer) as the Metadata entry "valence", whose
buffer holds the JSON. The repository facts are only given when they are true of this file: HEAD's dvc.lock (as
committed) records an output at its path with its md5; a model changed since, or one outside a repository, gets
none of them, never a guess. No TensorFlow here: the serving box runs this.
"""
import json
import os
import posixpath
import re
import subprocess
import zipfile
from pathlib import Path

from valence import files
from valence.errors import PipelineError
from valence.files import atomic_path, digest_of, write_zip

MEMBER = "valence.json"  # a .keras file's member holding the metadata
ENTRY = "valence"  # a .tflite file's Metadata entry holding it
ZIP_EPOCH = files.ZIP_EPOCH  # the time of every member of a .keras file it writes (valence.files.write_zip)
TFLITE_ID = b"TFL3"  # the TFLite schema's file identifier
ALIGNMENT = 16  # TFLite's converter aligns buffers to 16 bytes; a rewritten file keeps them so
VERSION_TAG = r"v\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?"  # GTO's <artifact>@v1.2.3; not its #stage or ! tags


# --- metadata inside the model file -------------------------------------------------------------------------

def metadata_bytes(metadata):
    """The JSON of ``metadata``, keys sorted: the same dict, the same bytes."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def embed(path, metadata):
    """Write ``metadata`` (a JSON dict) into the model file at ``path``, replacing any earlier one, through a
    temporary file beside it renamed onto it (a DVC cache link is replaced, never written through)."""
    path = Path(path)
    writers = {".keras": embed_keras, ".tflite": embed_tflite}
    if path.suffix not in writers:
        raise PipelineError(f"{path}: cannot embed metadata in this format; expected one of {', '.join(writers)}")
    data = metadata_bytes(metadata)
    with atomic_path(path) as tmp:
        writers[path.suffix](path, data, tmp)


def embed_keras(path, data, tmp):
    """The archive's entries in order, less an earlier valence.json, then the new one, each with its compression
    at the zip epoch (``write_zip``, as valence.learn.models.save writes them)."""
    with zipfile.ZipFile(path) as old:
        entries = [(info.filename, old.read(info), info) for info in old.infolist() if info.filename != MEMBER]
    like = entries[0][2] if entries else zipfile.ZipInfo(MEMBER)
    write_zip(tmp, [*entries, (MEMBER, data, like)])


def embed_tflite(path, data, tmp):
    """The model's flatbuffer with a Metadata entry "valence" whose buffer holds ``data`` (an earlier entry's
    buffer is reused, so the tensors' buffer indices never move), packed again with buffers 16-byte aligned."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    if not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise PipelineError(f"{path}: not a TFLite flatbuffer (no {TFLITE_ID.decode()} identifier)")
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    model.buffers, model.metadata = model.buffers or [], model.metadata or []
    if any(b.offset > 1 for b in model.buffers):  # weights after the flatbuffer (a model over 2 GB): Pack drops them
        raise PipelineError(f"{path}: its weights are stored outside the flatbuffer; cannot embed metadata")
    entry = next((m for m in model.metadata if text(m.name) == ENTRY), None)
    if entry is None:
        entry = schema.MetadataT(name=ENTRY, buffer=len(model.buffers))
        model.buffers.append(schema.BufferT())
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = np.frombuffer(data, np.uint8)
    aligned = aligned_buffer(schema)
    for buffer in model.buffers:
        buffer.__class__ = aligned
    builder = flatbuffers.Builder(len(buf) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_ID)
    tmp.write_bytes(builder.Output())


def aligned_buffer(schema):
    """schema.BufferT, its data packed on a 16-byte boundary as TFLite's converter packs it (the generated Pack
    aligns it to its element size: 1 byte)."""

    class AlignedBuffer(schema.BufferT):
        def Pack(self, builder):
            if self.data is not None:  # the generated Pack writes the data first: pad so that it starts aligned
                builder.Prep(ALIGNMENT, len(self.data))
            return super().Pack(builder)

    return AlignedBuffer


def text(name):
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def embedded(path):
    """The metadata ``embed`` wrote into the model file at ``path``; {} when it holds none, or the file is damaged
    or of another format (a missing file is an OSError)."""
    readers = {".keras": read_keras, ".tflite": read_tflite}
    reader = readers.get(Path(path).suffix)
    if reader is None:
        return {}
    with open(path, "rb") as f:
        try:
            found = reader(f)
        except Exception:  # noqa: BLE001 — a damaged file raises whatever its parser meets; it embeds nothing
            return {}
    return found if isinstance(found, dict) else {}


def read_keras(f):
    with zipfile.ZipFile(f) as archive:
        if MEMBER not in archive.namelist():
            return {}
        return json.loads(archive.read(MEMBER))


def read_tflite(f):
    from ai_edge_litert import schema_py_generated as schema

    buf = f.read()
    if not schema.Model.ModelBufferHasIdentifier(buf, 0):
        return {}
    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if text(entry.Name()) == ENTRY:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    return {}


# --- the model's identity ------------------------------------------------------------------------------------

def identity(path):
    """{"md5": the file's md5 (as dvc.lock records it), "file": its name (never its folder), "embedded": its
    metadata ({} if none)}, and "revision" (HEAD), "artifact" (its dvc.yaml artifacts entry) and "version" (a tag
    <artifact>@v… at HEAD) where HEAD's dvc.lock records this file with this md5 and they exist."""
    path = Path(path)
    found = {"md5": digest_of(path, "md5"), "file": path.name, "embedded": embedded(path)}
    return {**found, **recorded(path, found["md5"])}


def trained_by(identity):
    """The valence version that trained the file, as its embedded valence_version says; None for a model from
    before versions, or not made by the train stage."""
    return identity["embedded"].get("valence_version")


def made_by(identity):
    """``trained_by`` in words, for a summary line."""
    version = trained_by(identity)
    return f"made by valence {version}" if version else "made by valence: version not recorded"


def source(identity):
    """One short string for a CSV column: <artifact>@<version>, else git:<12 hex of the revision>, else ""."""
    if identity.get("artifact") and identity.get("version"):
        return f"{identity['artifact']}@{identity['version']}"
    if identity.get("revision"):
        return f"git:{identity['revision'][:12]}"
    return ""


def git(folder, *args):
    """git's output in ``folder``, or None when it fails (no git, no repository, no commit, no such file)."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def committed_yaml(top, name):
    """The YAML document ``name`` (relative to ``top``) as committed at HEAD; {} where there is none."""
    import yaml

    content = git(top, "show", f"HEAD:{name}")
    try:
        document = yaml.safe_load(content) if content else None
    except yaml.YAMLError:
        return {}
    return document if isinstance(document, dict) else {}


def entries(document, key):
    """The mappings under ``document[key]`` (a mapping of mappings), {} where it is anything else."""
    found = document.get(key)
    return {k: v for k, v in found.items() if isinstance(v, dict)} if isinstance(found, dict) else {}


def locked(lock, name, md5):
    """Whether the dvc.lock document ``lock`` records an output ``name`` (relative to it) with ``md5``."""
    return any(isinstance(out, dict) and posixpath.normpath(str(out.get("path"))) == name and out.get("md5") == md5
               for stage in entries(lock, "stages").values() for out in stage.get("outs") or [])


def recorded(path, md5):
    """revision, artifact and version of the file at ``path`` (md5 ``md5``) where the dvc.lock nearest above it
    in its repository, as committed at HEAD, records it with that md5; {} otherwise."""
    folder = Path(os.path.realpath(Path(os.path.abspath(path)).parent))  # the file itself may be a cache link
    top, revision = git(folder, "rev-parse", "--show-toplevel"), git(folder, "rev-parse", "--verify", "-q", "HEAD")
    if top is None or revision is None or not re.fullmatch(r"[0-9a-f]{40}", revision.strip()):
        return {}
    top, revision = Path(top.strip()), revision.strip()
    for stages in [folder, *folder.parents]:
        if stages != top and top not in stages.parents:
            return {}
        where = stages.relative_to(top).as_posix()
        name = (folder / Path(path).name).relative_to(stages).as_posix()
        if locked(committed_yaml(top, posixpath.join(where, "dvc.lock")), name, md5):
            return {"revision": revision, **artifact_of(top, where, name)}
    return {}


def artifact_of(top, where, name):
    """{"artifact", "version"} of the output ``name`` of the dvc.yaml in ``where`` (relative to ``top``), as
    committed at HEAD: the artifacts entry whose path it is (a dvc.yaml below the top names it <where>:<name>,
    as DVC does) and the highest <artifact>@v… tag at HEAD; either absent where there is none."""
    artifacts = entries(committed_yaml(top, posixpath.join(where, "dvc.yaml")), "artifacts")
    named = next((k for k, v in artifacts.items() if posixpath.normpath(str(v.get("path"))) == name), None)
    if named is None:
        return {}
    artifact = named if where == "." else f"{where}:{named}"
    tags = git(top, "tag", "--points-at", "HEAD", "--sort=-v:refname", "--list", f"{artifact}@v*") or ""
    version = next((t.split("@", 1)[1] for t in tags.split()
                    if re.fullmatch(re.escape(artifact) + "@" + VERSION_TAG, t)), None)
    return {"artifact": artifact, **({"version": version} if version else {})}
