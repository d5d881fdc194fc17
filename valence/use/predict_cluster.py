"""`valence predict --scheduler`: the photos in shards on a Dask cluster, each shard's rows kept as it finishes.

    valence predict /scratch/photos --out predictions.csv --scheduler tcp://10.0.0.5:8786
    valence predict photos/ --out predictions.csv --scheduler local:8     # 8 worker processes on this machine

Shard i's rows go to <out>.parts/i.csv (and the photos it skipped to i.skipped.csv), each written whole; when
every shard is in, <out> is written in input order and the parts folder removed. Run the same command again
after a crash and only the shards missing from the parts folder are scored: a killed client loses at most the
shards in flight. The parts remember what they were made from (model, files, threshold, flip averaging, shard
size); another run's parts are an error rather than a silent mix.
"""
import hashlib
import json
import shutil
from pathlib import Path

from tqdm import tqdm

from valence.errors import PipelineError
from valence.files import read_csv, write_csv, write_json

SHARD_SIZE = 256  # photos a task: small enough that a lost worker costs little, large enough to batch well


def score_shard(paths, model, batch_size, threshold, flip_average):
    """On a worker: (rows, skipped) of ``predict_files`` for one shard, with the model loaded once per process."""
    from valence import cluster
    from valence.use.classifier import open_classifier
    from valence.use.predict import predict_files

    classifier = cluster.worker_model(model, open_classifier)
    return predict_files(classifier, paths, batch_size, threshold, flip_average, progress=False)


def recipe(model_md5, files, threshold, flip_average, shard_size):
    """What a parts folder was made from: a run with another recipe must not reuse it."""
    listing = hashlib.md5("\n".join(map(str, files)).encode()).hexdigest()
    return {"model": model_md5, "files": listing, "images": len(files), "threshold": threshold,
            "flip_average": bool(flip_average), "shard_size": shard_size}


def open_parts(parts, wanted):
    """The shard indices already done in ``parts``: none when it is not there; an error when its recipe is
    not ``wanted``."""
    manifest = parts / "recipe.json"
    if not manifest.is_file():
        return set()
    found = json.loads(manifest.read_text())
    differ = [k for k in wanted if found.get(k) != wanted[k]]
    if differ:
        raise PipelineError(f"{parts}: parts of another run (its {', '.join(differ)} differ); remove the "
                            "folder to start afresh, or use another --out")
    return {int(p.stem) for p in parts.glob("*.csv") if p.stem.isdigit()}


def predict_on_cluster(address, model_path, files, out, batch_size, threshold, flip_average,
                       shard_size=SHARD_SIZE):
    """(rows, skipped, shards retried, parts folder) for ``files`` scored on the cluster at ``address``; writes
    nothing to ``out`` itself (the caller does, once) but keeps every finished shard in <out>.parts."""
    from valence import cluster
    from valence.files import digest_of
    from valence.use.classifier import check_model_path
    from valence.use.predict import columns, is_url

    model_path = check_model_path(model_path)
    given = [str(f) for f in files]
    shards = [given[i:i + shard_size] for i in range(0, len(given), shard_size)]
    parts = Path(f"{out}.parts")
    wanted = recipe(digest_of(model_path, "md5"), given, threshold, flip_average, shard_size)
    done = open_parts(parts, wanted)
    todo = [i for i in range(len(shards)) if i not in done]
    if done:
        print(f"resuming: {len(done)} of {len(shards)} shards already done in {parts}")
    retried = 0
    if todo:
        with cluster.session(address) as client:
            model = cluster.send_model(client, model_path)
            if not done:  # the folder only once a cluster answered: a failed connection leaves nothing behind
                parts.mkdir(parents=True, exist_ok=True)
                write_json(parts / "recipe.json", wanted)
            # workers share the file system (or read the same URLs)
            absolute = [[p if is_url(p) else str(Path(p).resolve()) for p in shards[i]] for i in todo]
            with tqdm(total=sum(len(shards[i]) for i in todo), desc=f"predicting on {address}", unit="img") as bar:
                shard_map = cluster.ShardMap(client, score_shard, absolute, model, batch_size, threshold,
                                             flip_average)
                for k, (rows, skipped) in shard_map:
                    i = todo[k]
                    named = dict(zip(absolute[k], shards[i]))  # back to the paths as the user gave them
                    write_csv(parts / f"{i}.skipped.csv", [{"path": named[p], "reason": r} for p, r in skipped],
                              ["path", "reason"])
                    write_csv(parts / f"{i}.csv", [{**r, "path": named[r["path"]]} for r in rows], columns(rows))
                    bar.update(len(shards[i]))
            retried = shard_map.retried
    rows, skipped = [], []
    for i in range(len(shards)):
        rows += read_csv(parts / f"{i}.csv")
        skipped += [(r["path"], r["reason"]) for r in read_csv(parts / f"{i}.skipped.csv")]
    return rows, skipped, retried, parts


def finish(parts):
    """The final CSV is written: the parts are no longer needed."""
    shutil.rmtree(parts, ignore_errors=True)
