"""Map a model over photos in shards on a Dask cluster (docs/guide.md: On a cluster).

    client = cluster.connect("tls://10.0.0.5:8786")   # or "local:4": four worker processes on this machine
    model = cluster.send_model(client, "models/model.tflite")  # on every worker, once
    for index, result in cluster.ShardMap(client, score_shard, shards, model, ...): ...

The scheduler address comes from `valence predict --scheduler` or, for the stages, Dask's own
DASK_SCHEDULER_ADDRESS; with neither, nothing here runs and nothing of Dask is imported. The model file's
bytes go to every worker once (a worker plugin, so workers that join later get it too): workers need no copy
of models/ and never load a stale one; each worker process loads it once and keeps it for every shard.
Photos are read by the workers from the paths given, so they must see the same file system (an HPC scratch,
NFS) at the same absolute paths, or from the same s3:// URLs.
A worker lost mid-run costs only its shards: Dask runs them again elsewhere, and ``ShardMap`` says how many.

Whoever reaches a scheduler can run code on its workers and its clients (Dask sends pickles), so a shared
cluster is tls:// with certificates, given the Dask way: Dask's config (distributed.comm.tls.ca-file,
.client.cert, .client.key; DASK_DISTRIBUTED__COMM__TLS__* in the environment) or, for `valence predict`, its
--tls-* flags, which ``use_tls`` puts into that config. local:N makes its own temporary certificates.
"""
import contextlib
import hashlib
import os
import sys
import threading
from pathlib import Path

from distributed import WorkerPlugin  # only the cluster paths import this module: Dask is theirs alone

from valence.errors import PipelineError, first_line

CONNECT_TIMEOUT = 10  # seconds a scheduler has to answer
MODEL_FOLDER = "valence-models"  # in each worker's own local_directory, mode 0700: the model files it loads
_LOADED = {}  # in a worker process: md5 → the loaded model, kept for every later shard
# the client's TLS files: (Security field, Dask config key, valence predict flag, what the file is)
TLS_FILES = [("tls_ca_file", "distributed.comm.tls.ca-file", "--tls-ca-file", "CA certificate"),
             ("tls_client_cert", "distributed.comm.tls.client.cert", "--tls-cert", "certificate"),
             ("tls_client_key", "distributed.comm.tls.client.key", "--tls-key", "private key")]


def use_tls(ca_file=None, cert=None, key=None):
    """`valence predict`'s --tls-* flags into Dask's config, encryption required: ``connect``'s Client(address)
    then builds its Security from them as it does from the DASK_DISTRIBUTED__COMM__TLS__* variables."""
    import dask

    given = {}
    for (_, config, flag, what), value in zip(TLS_FILES, (ca_file, cert, key)):
        if value:
            _readable(value, f"{what} ({flag})")
            given[config] = str(value)  # Dask's config holds strings, as from the environment
    if given:
        dask.config.set({**given, "distributed.comm.require-encryption": True})


def _readable(path, what):
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise PipelineError(f"{path}: cannot read the TLS {what} ({err.strerror or type(err).__name__})") from None


def client_security(address):
    """The Security that Client(address) builds from Dask's config, checked: a tls:// address has a CA and a
    certificate that load (one line naming what is missing or the file that is wrong); a tcp:// one that is
    not loopback gets a warning on stderr."""
    import ssl

    from distributed.security import Security

    security = Security()
    scheme = address.split("://")[0] if "://" in address else "tls" if security.require_encryption else "tcp"
    if scheme == "tcp" and security.require_encryption:
        raise PipelineError(f"scheduler {address}: TLS is required (--tls-* flags or Dask's "
                            "distributed.comm.require-encryption) but the address is tcp://; give tls://…")
    if scheme == "tcp" and not _loopback(address):
        print(f"warning: scheduler {address} is unencrypted and unauthenticated: anyone who reaches it can run "
              "code on the workers and on this client (use tls:// with certificates; docs/guide.md: On a cluster)",
              file=sys.stderr)
    if scheme != "tls":
        return security
    missing = [f"{flag} (or {_variable(config)})" for field, config, flag, _ in TLS_FILES[:2]
               if not getattr(security, field)]
    if missing:
        raise PipelineError(f"scheduler {address}: TLS needs {' and '.join(missing)}: the CA that signed the "
                            "scheduler's certificate and this client's certificate signed by the CA the scheduler "
                            "trusts (--tls-key too unless the key is in the certificate file)")
    files = {field: getattr(security, field) for field, *_ in TLS_FILES}
    if any(value and value.lstrip().startswith("-----BEGIN") for value in files.values()):
        return security  # PEM text rather than paths (Security.temporary's): Dask checks it when it connects
    for field, config, _, what in TLS_FILES:
        if files[field]:
            _readable(files[field], f"{what} ({config})")
    try:
        ssl.create_default_context(cafile=files["tls_ca_file"])
    except ssl.SSLError as err:
        raise PipelineError(f"{files['tls_ca_file']}: not a PEM CA certificate ({first_line(err)})") from None
    try:
        ssl.create_default_context().load_cert_chain(files["tls_client_cert"], files["tls_client_key"])
    except ssl.SSLError as err:
        named = " with ".join(filter(None, [files["tls_client_cert"], files["tls_client_key"]]))
        raise PipelineError(f"{named}: not a PEM certificate and its private key ({first_line(err)})") from None
    return security


def _variable(config):
    """The environment variable of a Dask config key: distributed.comm.tls.ca-file → DASK_DISTRIBUTED__COMM__…"""
    return "DASK_" + config.upper().replace(".", "__").replace("-", "_")


def _loopback(address):
    """Whether ``address``'s host is this machine only (valence.network.is_loopback)."""
    from distributed.comm.addressing import get_address_host

    from valence.network import is_loopback

    try:
        return is_loopback(get_address_host(address))
    except ValueError:
        return False


def connect(address, timeout=CONNECT_TIMEOUT):
    """A Dask client for ``address`` (tls://host:port, tcp://host:port, or local:N to start N one-thread worker
    processes here, on temporary TLS certificates so that no other user of this machine can join); a one-line
    error naming the address when no scheduler answers within ``timeout`` seconds or the TLS handshake fails."""
    from distributed import Client, LocalCluster
    from distributed.security import Security

    if address.startswith("local:"):
        try:
            workers = int(address.removeprefix("local:"))
        except ValueError:
            workers = 0
        if workers < 1:
            raise PipelineError(f"scheduler {address!r}: local:N needs a whole number of workers N ≥ 1")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               host="127.0.0.1", protocol="tls://", security=Security.temporary())
        return Client(cluster)  # with the cluster's security
    client_security(address)  # checked here; Client builds the same from Dask's config
    try:
        return _client(address, timeout)
    except PipelineError:
        raise
    except (OSError, TimeoutError) as err:
        if _handshake_failed(err):
            raise PipelineError(f"scheduler {address}: TLS handshake failed ({first_line(err)[:160]}); the "
                                "scheduler's certificate must be signed by the CA given, and this client's by the "
                                "CA the scheduler trusts") from None
        raise PipelineError(f"scheduler {address}: no answer within {timeout} s ({first_line(err)[:120]})") from None
    except Exception as err:  # a service that is not Dask: its bytes read as a frame (a MemoryError of EiB, …)
        raise PipelineError(f"scheduler {address}: what answered there is not a Dask scheduler "
                            f"({type(err).__name__}: {first_line(err)[:120]})") from None


def _client(address, timeout):
    """Client(address), with ``timeout`` seconds to connect and as many again for Dask's handshake, which has no
    deadline of its own: a listener that accepts the connection but never answers (an HTTP server, say) would
    hold the command for ever. The client is made in a daemon thread, left behind when it does not return."""
    from distributed import Client

    made = {}

    def make():
        try:
            made["client"] = Client(address, timeout=f"{timeout}s")
        except BaseException as err:  # noqa: BLE001 — handed to the caller's thread
            made["error"] = err

    thread = threading.Thread(target=make, name="valence-connect", daemon=True)
    thread.start()
    thread.join(2 * timeout)
    if thread.is_alive():
        raise PipelineError(f"scheduler {address}: something accepted the connection but no Dask scheduler answered "
                            f"within {2 * timeout:g} s")
    if "error" in made:
        raise made["error"]
    return made["client"]


def _handshake_failed(err):
    """Whether ``err`` comes of TLS (a certificate refused by either side) rather than of no answer."""
    import ssl

    from distributed.comm.core import FatalCommClosedError

    seen = set()
    while err is not None and id(err) not in seen:
        # Dask's message names the SSL error when it wraps it (a refused client certificate can read as EOF)
        if isinstance(err, (ssl.SSLError, FatalCommClosedError)) or "SSL" in str(err):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


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
    path = Path(path)
    data = path.read_bytes()
    model = path.suffix, hashlib.md5(data).hexdigest()  # of the bytes sent, which the workers check
    client.register_plugin(ModelFile(data, *model), name=f"valence-model-{model[1]}")
    return model


def model_folder(worker):
    """The worker's own folder for model files: in its local_directory, this user's, mode 0700 (not a shared
    /tmp path that another user could fill first)."""
    folder = Path(worker.local_directory) / MODEL_FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    found = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or found.st_uid != os.getuid():
        raise PipelineError(f"{folder}: not a folder of this user's; the worker keeps its model files there")
    folder.chmod(0o700)  # whatever the umask, or an older folder
    return folder


def _md5(path):
    """The md5 of ``path``'s bytes, or None when there is no such file."""
    try:
        return hashlib.md5(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


class ModelFile(WorkerPlugin):
    """A worker plugin: writes the model file into the worker's private model folder when the worker starts (or
    now, if it runs already), unless a file there has the right md5 already."""

    def __init__(self, data, suffix, md5):
        self.data, self.suffix, self.md5 = data, suffix, md5

    def setup(self, worker=None):
        from valence.files import atomic_path

        path = model_folder(worker) / f"{self.md5}{self.suffix}"
        if _md5(path) != self.md5:  # absent, half-written or changed: from the bytes the client sent
            with atomic_path(path, suffix=self.suffix) as tmp:
                tmp.write_bytes(self.data)


def worker_model(model, opener):
    """In a worker task: the model of ``send_model`` loaded once per process, through ``opener(path)``, and only
    when the file's md5 is the one sent (the folder is private: only this user could change it in between)."""
    from distributed import get_worker

    suffix, md5 = model
    if md5 not in _LOADED:
        path = model_folder(get_worker()) / f"{md5}{suffix}"
        found = _md5(path)
        if found is None:
            raise PipelineError(f"{path}: the model file was not installed on this worker")
        if found != md5:
            raise PipelineError(f"{path}: md5 {found}, expected {md5}: the model file changed since it was "
                                "installed; not loaded")
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

