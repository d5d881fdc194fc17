"""valence.cluster's security: a tls:// cluster with certificates (a real `dask scheduler` and `dask worker`
processes on 127.0.0.1, certificates made here), local:N on temporary TLS, and model files that workers keep
in a private folder and load only when their md5 is the one sent."""
import copy
import datetime
import hashlib
import ipaddress
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from helpers import assert_one_line_error, environment, free_port, noise_photos, valence_predict
from valence.errors import PipelineError

DASK = Path(sys.executable).parent / "dask"  # the venv's own `dask` command


def authority(folder, name):
    """A CA and a certificate it signed (for 127.0.0.1), as ca.pem, cert.pem and key.pem in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def signed(subject, key, issuer, issuer_key, *extensions):
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    folder.mkdir(parents=True)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = signed(ca_name, ca_key, ca_name, ca_key, (x509.BasicConstraints(ca=True, path_length=None), True))
    cert = signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}: member")]), key, ca_name, ca_key,
                  (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return types.SimpleNamespace(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")


def flags(certs):
    return ["--tls-ca-file", certs.ca, "--tls-cert", certs.cert, "--tls-key", certs.key]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """(ours, another CA's): the cluster trusts ours only."""
    folder = tmp_path_factory.mktemp("certs")
    return authority(folder / "ours", "valence test CA"), authority(folder / "other", "another CA")


@pytest.fixture
def dask_config():
    """Dask's config as it was, again after the test (use_tls sets it for the whole process)."""
    import dask
    import distributed  # noqa: F401 — its defaults join the config on import: in it before it is saved

    saved = copy.deepcopy(dask.config.config)
    yield dask.config
    dask.config.config.clear()
    dask.config.config.update(saved)


# ---- fast: the checks before connecting, and the model folder ----

def test_a_planted_model_file_with_a_wrong_md5_is_rewritten_and_never_loaded(tmp_path, monkeypatch):
    import distributed

    from valence import cluster
    from valence.errors import PipelineError

    worker = types.SimpleNamespace(local_directory=str(tmp_path / "worker"))
    monkeypatch.setattr(distributed, "get_worker", lambda: worker)  # worker_model runs in a worker's task
    monkeypatch.setattr(cluster, "_LOADED", {})
    data = b"the model's bytes"
    md5 = hashlib.md5(data).hexdigest()
    folder = tmp_path / "worker/valence-models"
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    planted = folder / f"{md5}.tflite"
    planted.write_bytes(b"someone else's model")
    theirs = hashlib.md5(b"someone else's model").hexdigest()
    opened = []
    with pytest.raises(PipelineError, match=rf"^{planted}: md5 {theirs}, "
                                            rf"expected {md5}: the model file changed"):
        cluster.worker_model((".tflite", md5), opened.append)
    assert opened == []  # refused before the opener saw it

    cluster.ModelFile(data, ".tflite", md5).setup(worker=worker)
    assert planted.read_bytes() == data  # rewritten from the plugin's bytes
    assert folder.stat().st_mode & 0o777 == 0o700  # private, whatever it was
    assert cluster.worker_model((".tflite", md5), lambda path: ("loaded", path)) == ("loaded", planted)

    monkeypatch.setattr(cluster, "_LOADED", {})  # a fresh worker process: the file is checked again
    planted.write_bytes(b"changed after setup")
    with pytest.raises(PipelineError, match=rf"md5 {hashlib.md5(b'changed after setup').hexdigest()}, "
                                            rf"expected {md5}"):
        cluster.worker_model((".tflite", md5), opened.append)
    planted.unlink()
    with pytest.raises(PipelineError, match="the model file was not installed on this worker"):
        cluster.worker_model((".tflite", md5), opened.append)
    assert opened == []


def test_the_model_folder_is_the_workers_own(tmp_path):
    from valence import cluster
    from valence.errors import PipelineError

    fresh = types.SimpleNamespace(local_directory=str(tmp_path / "fresh"))
    (tmp_path / "fresh").mkdir()
    assert cluster.model_folder(fresh).stat().st_mode & 0o777 == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked/valence-models").symlink_to(elsewhere)  # a folder planted to point elsewhere
    with pytest.raises(PipelineError, match=r"valence-models: not a folder of this user's"):
        cluster.model_folder(types.SimpleNamespace(local_directory=str(tmp_path / "linked")))


def test_a_plain_tcp_scheduler_off_this_machine_is_warned_about(capsys, dask_config):
    from valence import cluster

    for address in ["tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786", "127.0.0.2:8786"]:
        cluster.client_security(address)
        assert capsys.readouterr().err == "", address
    cluster.client_security("tcp://10.0.0.5:8786")  # checked only: nothing is sent to it
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and warning.startswith("warning: scheduler tcp://10.0.0.5:8786 is unencrypted "
                                                           "and unauthenticated: anyone who reaches it can run code")


def test_tls_settings_are_checked_before_connecting(tmp_path, certs, dask_config):
    from valence import cluster
    from valence.errors import PipelineError

    ours, other = certs
    address = "tls://127.0.0.1:8786"
    with pytest.raises(PipelineError, match=r"^scheduler tls://127.0.0.1:8786: TLS needs --tls-ca-file \(or "
                                            r"DASK_DISTRIBUTED__COMM__TLS__CA_FILE\) and --tls-cert \(or "
                                            r"DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT\)"):
        cluster.client_security(address)
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/absent.pem: cannot read the TLS certificate \(--tls-cert\) "
                                            r"\(No such file or directory\)$"):
        cluster.use_tls(ours.ca, tmp_path / "absent.pem", ours.key)
    assert dask_config.get("distributed.comm.tls.client.cert") is None  # nothing set from a failed check

    cluster.use_tls(ours.ca, ours.cert, ours.key)
    security = cluster.client_security(address)  # what Client(address) builds: from the config
    assert (security.require_encryption, security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == (
        True, str(ours.ca), str(ours.cert), str(ours.key))
    with pytest.raises(PipelineError, match="TLS is required .* but the address is tcp://; give tls://"):
        cluster.client_security("tcp://127.0.0.1:8786")

    (tmp_path / "notes.txt").write_text("not a CA")
    cluster.use_tls(tmp_path / "notes.txt")
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/notes.txt: not a PEM CA certificate"):
        cluster.client_security(address)
    cluster.use_tls(ours.ca, ours.cert, other.key)  # a key of another certificate
    with pytest.raises(PipelineError, match=rf"^{ours.cert} with {other.key}: not a PEM certificate and its private"):
        cluster.client_security(address)

    dask_config.config.clear()  # Dask's config from the environment, as the features stage gets it
    dask_config.refresh(env={"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(ours.ca),
                             "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(ours.cert),
                             "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(ours.key)})
    security = cluster.client_security(address)
    assert (security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == tuple(
        map(str, (ours.ca, ours.cert, ours.key)))


@pytest.fixture
def listener():
    """A TCP port on 127.0.0.1 where something other than Dask listens: ``start(answer)`` serves ``answer`` (bytes)
    to each connection, or with None accepts and never answers; its address."""
    import socket
    import threading

    server, stop = socket.create_server(("127.0.0.1", 0)), threading.Event()
    server.settimeout(0.1)

    def serve(answer):
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connection.sendall(answer)
            connection.close()

    def start(answer):
        if answer is not None:
            threading.Thread(target=serve, args=(answer,), daemon=True).start()  # None: the kernel accepts alone
        return f"tcp://127.0.0.1:{server.getsockname()[1]}"

    yield start
    stop.set()
    server.close()


def test_a_service_that_is_not_dask_is_one_line_not_a_traceback(listener, dask_config):
    """An HTTP answer read as a Dask frame asked for exabytes (MemoryError, a traceback) before this check."""
    from valence import cluster

    address = listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
    with pytest.raises(PipelineError, match=r"what answered there is not a Dask scheduler \(") as refused:
        cluster.connect(address, timeout=2)
    assert str(refused.value).startswith(f"scheduler {address}: ") and "\n" not in str(refused.value)


def test_a_listener_that_never_answers_does_not_hold_the_command(listener, dask_config):
    """Dask's handshake has no deadline: without one of ours, connect waited for ever."""
    from valence import cluster

    address = listener(None)
    started = time.monotonic()
    with pytest.raises(PipelineError, match="something accepted the connection but no Dask scheduler answered "
                                            "within 2 s"):
        cluster.connect(address, timeout=1)
    assert time.monotonic() - started < 30  # 2 s here; the point is that it returns at all


# ---- slow: real processes ----

@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return noise_photos(tmp_path_factory.mktemp("photos"), 60)


def predict(args, env=None):
    return valence_predict(args, env, timeout=300)


class TLSCluster:
    """`dask scheduler` on tls://127.0.0.1 trusting ``certs``, and ``workers`` `dask worker` processes started
    with ``certs``; logs in ``folder``."""

    def __init__(self, folder, certs, workers=2):
        self.folder, self.certs, self.processes = folder, certs, []
        self.address = f"tls://127.0.0.1:{free_port()}"
        self.start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
                                 "--protocol", "tls", "--no-dashboard", *flags(certs)])
        try:
            for _ in range(workers):
                self.worker(certs)
            with self.client() as client:  # the scheduler answers (and the workers joined)
                if workers:
                    client.wait_for_workers(workers, timeout=60)
        except BaseException:  # never leave a scheduler or workers running behind a failed start
            self.stop()
            raise

    def start(self, name, command):
        log = open(self.folder / f"{name}-{len(self.processes)}.log", "w")
        self.processes.append(subprocess.Popen(list(map(str, command)), env=environment(), stdout=log,
                                               stderr=subprocess.STDOUT, cwd=self.folder))
        log.close()
        return self.processes[-1]

    def worker(self, certs=None):
        """A `dask worker` process with ``certs`` (None: without any)."""
        local = self.folder / f"worker-{len(self.processes)}"
        return self.start("worker", [DASK, "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                                     "--no-dashboard", "--no-nanny", "--local-directory", local,
                                     *(flags(certs) if certs else [])])

    def client(self):
        from distributed import Client
        from distributed.security import Security

        return Client(self.address, timeout="30s", security=Security(
            require_encryption=True, tls_ca_file=str(self.certs.ca), tls_client_cert=str(self.certs.cert),
            tls_client_key=str(self.certs.key)))

    def workers(self):
        with self.client() as client:
            return len(client.scheduler_info()["workers"])

    def stop(self):
        for process in reversed(self.processes):
            process.kill()
            process.wait(30)


@pytest.fixture(scope="module")
def tls_cluster(certs, tmp_path_factory):
    running = TLSCluster(tmp_path_factory.mktemp("tls-cluster"), certs[0])
    yield running
    running.stop()


@pytest.mark.slow
def test_a_tls_cluster_scores_as_in_process_with_flags_or_dask_variables(tls_cluster, certs, photos, tiny_models,
                                                                         in_process, tmp_path):
    ours = certs[0]
    out = tmp_path / "flags.csv"
    result = predict([photos, "--out", out, "--model", tiny_models[1], "--scheduler", tls_cluster.address,
                      "--shard-size", 20, *flags(ours)])
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == in_process.read_bytes()  # the same rows, byte for byte
    assert "warning" not in result.stderr and "no shard ran twice" in result.stdout

    env = dict(environment(), DASK_DISTRIBUTED__COMM__TLS__CA_FILE=str(ours.ca),
               DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT=str(ours.cert),
               DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY=str(ours.key))
    out = tmp_path / "variables.csv"
    result = predict([photos, "--out", out, "--model", tiny_models[1], "--scheduler", tls_cluster.address,
                      "--shard-size", 20], env)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == in_process.read_bytes()


@pytest.mark.slow
def test_the_stages_session_takes_tls_from_dask_variables(tls_cluster, certs, dask_config):
    """The features stage's path (stages/features.py: cluster.session of DASK_SCHEDULER_ADDRESS), with Dask's
    config from the environment as a `dvc repro` process reads it."""
    from valence import cluster
    from valence.errors import PipelineError

    ours = certs[0]
    with pytest.raises(PipelineError, match="TLS needs --tls-ca-file"):  # not from this process' config yet
        cluster.connect(tls_cluster.address)
    dask_config.refresh(env={"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(ours.ca),
                             "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(ours.cert),
                             "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(ours.key)})
    with cluster.session(tls_cluster.address) as client:
        assert sorted(client.run(cluster.project_version).values()) == [cluster.project_version()] * 2


@pytest.mark.slow
def test_a_client_without_the_certificate_is_refused_in_one_line(tls_cluster, certs, photos, tiny_models, tmp_path):
    ours, other = certs
    address = tls_cluster.address
    cases = {
        f"scheduler {address}: TLS needs --tls-ca-file": [],  # no certificate at all
        f"scheduler {address}: TLS handshake failed": flags(types.SimpleNamespace(ca=ours.ca, cert=other.cert,
                                                                                  key=other.key)),
        f"scheduler {address}: TLS handshake failed (TLS certificate does not match": flags(other),
        f"{tmp_path}/absent.pem: cannot read the TLS private key (--tls-key)": [
            "--tls-ca-file", ours.ca, "--tls-cert", ours.cert, "--tls-key", tmp_path / "absent.pem"],
    }
    for start, given in cases.items():
        began = time.monotonic()
        result = predict([photos, "--out", tmp_path / "p.csv", "--model", tiny_models[1], "--scheduler", address,
                          *given])
        assert_one_line_error(result, start)
        assert time.monotonic() - began < 60, start  # refused, not left waiting
        assert list(tmp_path.iterdir()) == [], start  # no CSV, no parts folder


@pytest.mark.slow
def test_an_unreachable_tls_scheduler_is_one_line(certs, photos, tiny_models, tmp_path):
    address = f"tls://127.0.0.1:{free_port()}"  # nothing listens there
    result = predict([photos, "--out", tmp_path / "p.csv", "--model", tiny_models[1], "--scheduler", address,
                      *flags(certs[0])])
    assert_one_line_error(result, f"scheduler {address}: no answer within 10 s")


@pytest.mark.slow
def test_a_worker_without_the_certificate_does_not_join(certs, tmp_path):
    ours, other = certs
    running = TLSCluster(tmp_path, ours, workers=0)
    try:
        outsiders = [running.worker(other), running.worker(None)]  # another CA's certificate; none
        running.worker(ours)  # started after them, so they had as long to join
        with running.client() as client:
            client.wait_for_workers(1, timeout=60)
            time.sleep(3)  # and a while longer
            assert len(client.scheduler_info()["workers"]) == 1
        assert all(process.poll() is None or process.returncode != 0 for process in outsiders)
    finally:
        running.stop()
    assert "TLS" in (tmp_path / "worker-1.log").read_text() + (tmp_path / "worker-2.log").read_text()


@pytest.mark.slow
def test_local_n_runs_on_temporary_tls_with_private_model_folders(photos, tiny_models, in_process, tmp_path):
    out = tmp_path / "predictions.csv"
    result = predict([photos, "--out", out, "--model", tiny_models[1], "--scheduler", "local:2", "--shard-size", 20])
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == in_process.read_bytes()

    from valence import cluster

    with cluster.session("local:2") as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        for security in ["None", "Security.temporary()"]:  # another user's client: no certificate, or its own
            code = ("import sys; from distributed import Client; from distributed.security import Security; "
                    f"Client(sys.argv[1], timeout='5s', security={security}); print('joined')")
            outsider = subprocess.run([sys.executable, "-c", code, address], env=environment(), capture_output=True,
                                      text=True, timeout=120)
            assert outsider.returncode != 0 and "joined" not in outsider.stdout, security
            assert "TLS" in outsider.stderr, outsider.stderr  # refused for its certificate, not for no answer
        suffix, md5 = cluster.send_model(client, tiny_models[1])

        def installed(dask_worker):
            folder = Path(dask_worker.local_directory) / "valence-models"
            return folder.stat().st_mode & 0o777, hashlib.md5((folder / f"{md5}{suffix}").read_bytes()).hexdigest()

        found = client.run(installed)
    assert len(found) == 2 and set(found.values()) == {(0o700, hashlib.md5(tiny_models[1].read_bytes()).hexdigest())}
