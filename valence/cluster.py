"""Map a model over photos in shards on a Dask cluster (docs/guide.md: On a cluster).

    client = cluster.connect("tcp://10.0.0.5:8786")   # or "local:4": four worker processes on this machine
    model = cluster.send_model(client, "models/model.tflite")  # on every worker, once
    for index, result in cluster.ShardMap(client, score_shard, shards, model, ...): ...

The scheduler address comes from `valence predict --scheduler` or, for the stages, Dask's own
DASK_SCHEDULER_ADDRESS; with neither, nothing here runs and nothing of Dask is imported. The model file's
bytes go to every worker once (a worker plugin, so workers that join later get it too): workers need no copy
of models/ and never load a stale one; each worker process loads it once and keeps it for every shard.
Photos are read by the workers from the paths given, so they must see the same file system (an HPC scratch,
NFS) at the same absolute paths, or from the same s3:// URLs.
A worker lost mid-run costs only its shards: Dask runs them again elsewhere, and ``ShardMap`` says how many.
"""
import contextlib
import os
import tempfile
from pathlib import Path

from distributed import WorkerPlugin  # only the cluster paths import this module: Dask is theirs alone

from valence.errors import PipelineError, first_line

CONNECT_TIMEOUT = 10  # seconds a scheduler has to answer
_LOADED = {}  # in a worker process: md5 → the loaded model, kept for every later shard


def connect(address, timeout=CONNECT_TIMEOUT):
    """A Dask client for ``address`` (tcp://host:port, or local:N to start N one-thread worker processes here);
    a one-line error naming the address when no scheduler answers within ``timeout`` seconds."""
    from distributed import Client, LocalCluster

    if address.startswith("local:"):
        try:
            workers = int(address.removeprefix("local:"))
        except ValueError:
            workers = 0
        if workers < 1:
            raise PipelineError(f"scheduler {address!r}: local:N needs a whole number of workers N ≥ 1")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               host="127.0.0.1")
        return Client(cluster)
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as err:
        raise PipelineError(f"scheduler {address}: no answer within {timeout} s ({first_line(err)[:120]})") from None


@contextlib.contextmanager
def session(address):
    """``connect`` and ``check_workers``; afterwards the client closed (and a local:N cluster stopped)."""
    client = connect(address)
    try:
        check_workers(client)
        yield client
    finally:
        client.close()
        if getattr(client, "cluster", None) is not None:
            client.cluster.close()


def check_workers(client, timeout=CONNECT_TIMEOUT):
    """Each worker must run this project's code as the client has it: a one-line error naming the first worker
    that does not, and what it lacks (or that no worker joined)."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise PipelineError(f"scheduler {client.scheduler.address}: no workers joined within {timeout} s") from None
    ours = project_version()
    for worker, theirs in sorted(client.run(project_version).items()):
        if theirs != ours:
            raise PipelineError(f"worker {worker}: {theirs}, this client {ours} (install the same project there: "
                                "pip install -r requirements.txt, or an image built from this checkout)")


def project_version():
    """"valence code <md5 of its source files>", or why the project cannot be imported here. The code, not the
    installed version: the serving image runs the package from /app without installing it."""
    import hashlib

    try:
        import valence
    except ImportError as err:
        return f"cannot import the project ({err})"
    digest = hashlib.md5()
    for path in sorted(Path(valence.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"valence code {digest.hexdigest()[:12]}"


def send_model(client, path):
    """Install the model file on every worker, present and future (a Dask worker plugin carrying its bytes):
    (suffix, md5), what ``worker_model`` loads. Tasks then depend on no data, so the scheduler hands each worker
    only what it can run now (queuing) and a lost worker takes few shards with it."""
    from valence.files import digest_of

    path = Path(path)
    model = path.suffix, digest_of(path, "md5")
    client.register_plugin(ModelFile(path.read_bytes(), *model), name=f"valence-model-{model[1]}")
    return model


def _model_path(suffix, md5):
    return Path(tempfile.gettempdir()) / f"valence-models-{os.getuid()}" / f"{md5}{suffix}"


class ModelFile(WorkerPlugin):
    """A worker plugin: writes the model file into the worker's temporary folder when the worker starts (or
    now, if it runs already)."""

    def __init__(self, data, suffix, md5):
        self.data, self.suffix, self.md5 = data, suffix, md5

    def setup(self, worker=None):
        path = _model_path(self.suffix, self.md5)
        if not path.is_file():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(self.data)
            tmp.replace(path)


def worker_model(model, opener):
    """In a worker: the model of ``send_model`` loaded once per process, through ``opener(path)``."""
    suffix, md5 = model
    if md5 not in _LOADED:
        path = _model_path(suffix, md5)
        if not path.is_file():
            raise PipelineError(f"{path}: the model file was not installed on this worker")
        _LOADED[md5] = opener(path)
    return _LOADED[md5]


def named_failure(function):
    """``function`` as a task whose errors name the worker they happened on."""
    def task(*args):
        try:
            return function(*args)
        except Exception as err:
            from distributed import get_worker

            raise RuntimeError(f"worker {get_worker().address}: {first_line(err)}") from None
    task.__name__ = task.__qualname__ = function.__name__
    return task


class ShardMap:
    """``function(shard, *args)`` for each shard, on the workers: iterate for (shard index, result) as shards
    finish; afterwards ``retried`` holds how many shards ran more than once (their worker was lost; None when
    the scheduler could not say)."""

    def __init__(self, client, function, shards, *args):
        self.client, self.task, self.shards, self.args = client, named_failure(function), shards, args
        self.retried = 0

    def __iter__(self):
        from distributed import as_completed

        futures = {self.client.submit(self.task, shard, *self.args, pure=False, retries=0): i
                   for i, shard in enumerate(self.shards)}
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    raise PipelineError(first_line(future.exception())) from None
                index, result = futures[future], future.result()
                future.release()  # its result is here now: a worker lost later must not have it computed again
                yield index, result
        finally:
            self.retried = _retried(self.client, {f.key for f in futures})
            self.client.cancel(list(futures))


def _retried(client, keys):
    """How many of ``keys`` the scheduler sent to a worker more than once: the shards a lost worker was
    running or had queued, and those it had finished whose results the client had not fetched yet."""
    def count(dask_scheduler, keys):  # runs on the scheduler: its log of state transitions
        runs = {}
        for key, _, finish, *_ in dask_scheduler.transition_log:
            if key in keys and finish == "processing":
                runs[key] = runs.get(key, 0) + 1
        return sum(n > 1 for n in runs.values())

    try:
        return client.run_on_scheduler(count, keys=keys)
    except Exception:  # the count is a report, not a result: never let it fail a finished run
        return None

