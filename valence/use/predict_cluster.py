"""`valence predict --scheduler`: the photos in shards on a Dask cluster, each shard's rows kept as it finishes.

    valence predict /scratch/photos --out predictions.csv --scheduler tcp://10.0.0.5:8786
    valence predict photos/ --out predictions.csv --scheduler local:8     # 8 worker processes on this machine

Shard i's rows go to <out>.parts/i.csv (and the photos it skipped to i.skipped.csv), each written whole, then its
manifest i.json: row counts, digests of its paths and of both CSVs' bytes, and each photo's size and modification
time (size and ETag for a URL) as they were when the shard was sent. When every shard is in, <out> is written in
input order, as a run in one process writes it (valence.use.predict.write_predictions: CSV, or Parquet ROW_GROUP
rows at a time for a .parquet <out>, every row ending with the model's md5 and source, which the client finds
once, and <out>.json beside it), then the files this tool wrote in the parts folder are removed (the folder too,
when nothing else is left in it). The parts are always CSV, without the model columns. Run the same command again
after a crash and only the shards without a matching part are scored: a part counts as done only when its manifest
matches its CSVs, its rows are exactly its shard's photos and those photos are unchanged since; any other part is
scored again, with a line saying why. The recipe (recipe.json, marked as this tool's) remembers what the parts
were made from (model, files, threshold, uncertain band, flip averaging, shard size): another run's parts are an error rather than
a silent mix, and a <out>.parts folder this tool did not make is refused and never touched.
"""
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from valence.errors import PipelineError, first_line
from valence.files import UMASK, remove_stale_temporaries, write_csv, write_json

SHARD_SIZE = 256  # photos a task: small enough that a lost worker costs little, large enough to batch well
MADE_BY = "valence predict"  # recipe.json's mark: a parts folder this tool made, so its to fill and remove
STAT_THREADS = 16  # URL stats in flight: an object store answers one request at a time slowly


def score_shard(paths, model, batch_size, threshold, flip_average, band=0.0):
    """On a worker: (rows, skipped) of ``predict_files`` for one shard, with the model loaded once per process."""
    from valence import cluster
    from valence.use.classifier import open_classifier
    from valence.use.predict import predict_files

    classifier = cluster.worker_model(model, open_classifier)
    return predict_files(classifier, paths, batch_size, threshold, flip_average, progress=False, band=band)


def digest(data):
    return hashlib.md5(data).hexdigest()


def paths_digest(paths):
    """One digest for a shard's paths, in any order (rows and skipped photos come back in two lists)."""
    return digest("\n".join(sorted(paths)).encode())


def recipe(model_md5, files, threshold, flip_average, shard_size, band=0.0):
    """What a parts folder was made from: a run with another recipe must not reuse it."""
    return {"made_by": MADE_BY, "model": model_md5, "files": digest("\n".join(map(str, files)).encode()),
            "images": len(files), "threshold": threshold, "uncertain_band": band, "flip_average": bool(flip_average),
            "shard_size": shard_size}


def kind(value):
    """A recipe value's JSON type, ints and floats alike (a threshold may be written either way)."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def open_parts(parts, wanted):
    """Whether ``parts`` holds an earlier run's parts to resume (False: no such folder yet). A one-line error when
    it is not this tool's (no recipe.json with its mark), its recipe is damaged, or it was made for another run."""
    if not os.path.lexists(parts):
        return False
    manifest = parts / "recipe.json"
    if not parts.is_dir() or not manifest.is_file():
        raise PipelineError(f"{parts}: not a parts folder of {MADE_BY} (no recipe.json), so it is left alone: "
                            "move it, or use another --out")
    try:
        found = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PipelineError(f"{manifest}: unreadable ({first_line(err)[:80]}); remove {parts} to start afresh, "
                            "or use another --out") from None
    if not isinstance(found, dict) or found.get("made_by") != MADE_BY:
        raise PipelineError(f"{manifest}: not a recipe of {MADE_BY} (no made_by mark), so {parts} is left alone: "
                            "move it, or use another --out")
    damaged = [k for k in wanted if kind(found.get(k)) != kind(wanted[k])]
    if damaged:
        raise PipelineError(f"{manifest}: damaged (its {', '.join(damaged)} missing or of the wrong type); "
                            f"remove {parts} to start afresh, or use another --out")
    differ = [k for k in wanted if found[k] != wanted[k]]
    if differ:
        raise PipelineError(f"{parts}: parts of another run (its {', '.join(differ)} differ); remove the "
                            "folder to start afresh, or use another --out")
    return True


def make_parts(parts, wanted):
    """The parts folder with its recipe, in one rename: never a folder of ours without its mark, and never onto
    a folder that appeared meanwhile (no rmtree here)."""
    parts.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(parts, ".tmp")  # what a killed make_parts left beside it
    tmp = Path(tempfile.mkdtemp(prefix=f".{parts.name}.", suffix=".tmp", dir=parts.parent))
    try:
        write_json(tmp / "recipe.json", wanted)
        os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes it private (0700)
        try:
            os.rename(tmp, parts)
        except OSError:
            raise PipelineError(f"{parts}: appeared while this run started, so it is left alone: move it, or use "
                                "another --out") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def stamp(path):
    """[size, mtime_ns] of a local file, [size, ETag or modification time] of an fsspec URL, None when it cannot be
    read (its worker skips it, with the reason): what tells an edited photo from the one a part scored."""
    from valence.use.predict import is_url

    if not is_url(path):
        try:
            status = os.stat(path)
        except OSError:
            return None
        return [status.st_size, status.st_mtime_ns]
    try:
        import fsspec

        filesystem, key = fsspec.core.url_to_fs(path)
        info = filesystem.info(key)
    except Exception:  # no credentials, no route, deleted: the worker's reading it says why
        return None
    version = next((info[k] for k in ("ETag", "etag", "mtime", "LastModified", "last_modified", "created")
                    if info.get(k) is not None), None)
    return [info.get("size"), None if version is None else str(version)]


def stamps(paths):
    """``stamp`` of each path: a stat each, URLs STAT_THREADS at a time."""
    from valence.use.predict import is_url

    if not any(is_url(p) for p in paths):
        return [stamp(p) for p in paths]
    with ThreadPoolExecutor(STAT_THREADS) as pool:
        return list(pool.map(stamp, paths))


def write_part(parts, i, rows, skipped, marks):
    """Shard i's rows, the photos it skipped, then its manifest: written last, so a part a killed run left
    without one is not taken for done. ``marks``: its photos' stamps when the shard was sent."""
    from valence.use.predict import columns

    write_csv(parts / f"{i}.skipped.csv", [{"path": p, "reason": r} for p, r in skipped], ["path", "reason"])
    write_csv(parts / f"{i}.csv", rows, columns(rows))
    write_json(parts / f"{i}.json", {
        "rows": len(rows), "skipped": len(skipped), "paths": paths_digest([r["path"] for r in rows] +
                                                                          [p for p, _ in skipped]),
        "csv": digest((parts / f"{i}.csv").read_bytes()),
        "skipped_csv": digest((parts / f"{i}.skipped.csv").read_bytes()), "stamps": marks})


def first(counter):
    """The first path of a Counter in sorted order: one example in a message."""
    return next(iter(sorted(counter)))


def read_part(parts, i, paths, marks):
    """((rows, skipped), None) for part i when it is done: its manifest matches both CSVs' bytes, its rows and
    skipped photos are exactly ``paths`` (shard i's) and those photos still have the stamps ``marks``.
    Otherwise (None, why it is not), why None when nothing of the part was ever written."""
    names = [parts / f"{i}{end}" for end in (".json", ".csv", ".skipped.csv")]
    if not any(os.path.lexists(p) for p in names):
        return None, None
    try:
        manifest = json.loads(names[0].read_text(encoding="utf-8"))
        data, skipped_data = names[1].read_bytes(), names[2].read_bytes()
    except FileNotFoundError as err:
        return None, f"no {Path(err.filename).name} (a run stopped while writing it, or another tool's file)"
    except OSError as err:
        return None, f"{Path(err.filename or '?').name} is unreadable ({first_line(err)[:80]})"
    except ValueError as err:  # only the manifest is parsed here
        return None, f"{i}.json is not JSON ({first_line(err)[:80]})"
    if not (isinstance(manifest, dict) and all(kind(manifest.get(k)) == "number" for k in ("rows", "skipped"))
            and all(isinstance(manifest.get(k), str) for k in ("paths", "csv", "skipped_csv"))
            and isinstance(manifest.get("stamps"), list)):
        return None, f"{i}.json is not a manifest of {MADE_BY}"
    if digest(data) != manifest["csv"] or digest(skipped_data) != manifest["skipped_csv"]:
        return None, "its CSVs are not the ones its manifest describes (truncated or edited)"
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
        skipped = [(r["path"], r["reason"]) for r in csv.DictReader(io.StringIO(skipped_data.decode("utf-8"),
                                                                                newline=""))]
    except (ValueError, KeyError, csv.Error) as err:
        return None, f"its CSVs are unreadable ({first_line(err)[:80]})"
    found = [r.get("path") or "" for r in rows] + [p or "" for p, _ in skipped]
    if (len(rows), len(skipped)) != (manifest["rows"], manifest["skipped"]) or paths_digest(found) != manifest["paths"]:
        return None, "its rows do not match its manifest"
    missing, extra = Counter(map(str, paths)) - Counter(found), Counter(found) - Counter(map(str, paths))
    if missing or extra:
        return None, "rows do not match its shard (" + "; ".join(
            ([f"{sum(missing.values())} of its photos missing, first {first(missing)}"] if missing else []) +
            ([f"{sum(extra.values())} paths not in it, first {first(extra)}"] if extra else [])) + ")"
    if manifest["stamps"] != marks:
        changed = next((p for p, old, new in zip(paths, manifest["stamps"], marks) if old != new), None)
        return None, f"{changed or 'a photo'} changed since it was scored"
    return (rows, skipped), None


def predict_on_cluster(address, model_path, files, out, batch_size, threshold, flip_average,
                       shard_size=SHARD_SIZE, band=0.0):
    """(batches, skipped, shards retried, parts folder) for ``files`` scored on the cluster at ``address``; writes
    nothing to ``out`` itself (the caller does, once) but keeps every finished shard in <out>.parts. ``batches``
    yields each shard's (rows, skipped) in input order, read back from its part when asked for: a million
    photos' rows are never all in memory at once."""
    from valence import cluster
    from valence.files import digest_of
    from valence.use.classifier import check_model_path
    from valence.use.predict import is_url

    model_path = check_model_path(model_path)
    given = [str(f) for f in files]
    shards = [given[i:i + shard_size] for i in range(0, len(given), shard_size)]
    parts = Path(f"{out}.parts")
    wanted = recipe(digest_of(model_path, "md5"), given, threshold, flip_average, shard_size, band)
    resuming = open_parts(parts, wanted)
    marks = stamps(given)  # before any shard is sent: a photo edited while it is scored is caught next time
    marks = [marks[i:i + shard_size] for i in range(0, len(given), shard_size)]
    done = {}  # shard index → the photos it skipped (its rows stay in its part)
    if resuming:
        for i, shard in enumerate(shards):
            found, why = read_part(parts, i, shard, marks[i])
            if found is not None:
                done[i] = found[1]
            elif why:
                print(f"part {i}: {why}; scoring it again", file=sys.stderr)
    todo = [i for i in range(len(shards)) if i not in done]
    if done:
        print(f"resuming: {len(done)} of {len(shards)} shards already done in {parts}")
    retried = 0
    if todo:
        with cluster.session(address) as client:
            model = cluster.send_model(client, model_path)
            if not resuming:  # the folder only once a cluster answered: a failed connection leaves nothing behind
                make_parts(parts, wanted)
            # workers share the file system (or read the same URLs)
            absolute = [[p if is_url(p) else str(Path(p).resolve()) for p in shards[i]] for i in todo]
            with tqdm(total=sum(len(shards[i]) for i in todo), desc=f"predicting on {address}", unit="img") as bar:
                shard_map = cluster.ShardMap(client, score_shard, absolute, model, batch_size, threshold,
                                             flip_average, band)
                for k, (rows, skipped) in shard_map:
                    i = todo[k]
                    named = dict(zip(absolute[k], shards[i]))  # back to the paths as the user gave them
                    done[i] = [(named[p], r) for p, r in skipped]
                    write_part(parts, i, [{**r, "path": named[r["path"]]} for r in rows], done[i], marks[i])
                    bar.update(len(shards[i]))
            retried = shard_map.retried
    batches = ((read_rows(parts, i), done[i]) for i in range(len(shards)))
    return batches, [s for i in range(len(shards)) for s in done[i]], retried, parts


def read_rows(parts, i):
    """Part i's rows as its CSV holds them (text: the writer types them)."""
    with open(parts / f"{i}.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def own_names(found):
    """The names a run of recipe ``found`` writes in its parts folder."""
    count = -(-found["images"] // found["shard_size"])
    return {"recipe.json"} | {f"{i}{end}" for i in range(count) for end in (".csv", ".skipped.csv", ".json")}


def finish(parts):
    """The final CSV is written: remove what this tool wrote in ``parts`` (and what a killed write of it left),
    then the folder when nothing else is in it. A folder without this tool's recipe is not touched."""
    try:
        found = json.loads((parts / "recipe.json").read_text(encoding="utf-8"))
        own = own_names(found) if found.get("made_by") == MADE_BY else set()
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ZeroDivisionError):
        own = set()
    if not own:
        return
    for entry in sorted(parts.iterdir(), key=lambda e: e.name == "recipe.json"):  # the recipe last: the mark
        name = entry.name
        if name.startswith(".") and name.endswith(".tmp"):  # atomic_path's .<name>.<random>.tmp
            name = name[1:-4].rsplit(".", 1)[0]
        if name in own and (entry.is_symlink() or not entry.is_dir()):
            entry.unlink()
    try:
        parts.rmdir()
    except OSError:
        print(f"kept {parts}: it holds files {MADE_BY} did not write", file=sys.stderr)
