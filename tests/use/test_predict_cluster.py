"""`valence predict --scheduler` on a real Dask cluster: a `dask scheduler` and two `dask worker` processes
started here on 127.0.0.1 (and stopped), the tiny model, 500 generated photos in shards of 20."""
import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, Cluster, environment, free_port, noise_photos, s3_environment, s3_server, valence_predict

SHARD = 20
pytestmark = pytest.mark.slow  # a scheduler and workers as processes: a minute or two


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return noise_photos(tmp_path_factory.mktemp("photos"), 500)


@pytest.fixture
def cluster():
    running = Cluster()
    yield running
    running.stop()


predict = valence_predict


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def same_predictions(out, expected):
    got, want = rows_of(out), rows_of(expected)
    assert [r["path"] for r in got] == [r["path"] for r in want] and len(got) == 500  # each photo once, in order
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert max(abs(float(a["probability"]) - float(b["probability"])) for a, b in zip(got, want)) <= 1e-6


def test_a_cluster_scores_every_photo_as_in_process(cluster, photos, tiny_models, in_process, tmp_path):
    out = tmp_path / "predictions.csv"
    result = predict([photos, "--out", out, "--model", tiny_models[1], "--scheduler", cluster.address,
                      "--shard-size", SHARD])
    assert result.returncode == 0, result.stderr
    same_predictions(out, in_process)
    assert out.read_bytes() == in_process.read_bytes()  # the same file, byte for byte
    assert "notes.txt: not an image" in result.stderr and "no shard ran twice" in result.stdout
    assert not (tmp_path / "predictions.csv.parts").exists()  # the parts are joined, then removed


def test_parquet_on_a_cluster_holds_what_a_run_in_one_process_writes(cluster, photos, tiny_models, in_process,
                                                                     tmp_path):
    """The parts merged into Parquet: the table a run in one process writes (types and values), the values of its
    CSV, and the same sidecar but for the times."""
    import pyarrow.parquet as pq

    here, there = tmp_path / "here.parquet", tmp_path / "there.parquet"
    assert predict([photos, "--out", here, "--model", tiny_models[1]]).returncode == 0
    result = predict([photos, "--out", there, "--model", tiny_models[1], "--scheduler", cluster.address,
                      "--shard-size", SHARD])
    assert result.returncode == 0, result.stderr
    table = pq.read_table(there)
    assert table.schema == pq.read_table(here).schema and table.to_pylist() == pq.read_table(here).to_pylist()
    expected = rows_of(in_process)
    assert table.column_names == list(expected[0]) and table.num_rows == len(expected) == 500
    for name in table.column_names:
        cast = float if name == "probability" else str
        assert table.column(name).to_pylist() == [cast(r[name]) for r in expected], name
    sidecars = [json.loads(Path(f"{out}.json").read_text()) for out in (here, there)]
    assert [{k: v for k, v in s.items() if k not in ("started", "finished", "out")} for s in sidecars] == [
        {k: v for k, v in sidecars[0].items() if k not in ("started", "finished", "out")}] * 2
    assert sidecars[1]["counts"]["scored"] == 500 and sidecars[1]["counts"]["skipped"] == 1
    assert sidecars[1]["format"] == "parquet" and not (tmp_path / "there.parquet.parts").exists()


def wait_for_parts(parts, count, process, timeout=120):
    deadline = time.monotonic() + timeout
    while len(list(parts.glob("[0-9]*.skipped.csv"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shards finished"
        time.sleep(0.05)


def test_a_worker_killed_mid_run_costs_only_its_shards(cluster, photos, tiny_models, in_process, tmp_path):
    out = tmp_path / "predictions.csv"
    client = subprocess.Popen([sys.executable, "-m", "valence", "predict", str(photos), "--out", str(out),
                               "--model", str(tiny_models[1]), "--scheduler", cluster.address, "--shard-size", "5"],
                              cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "predictions.csv.parts"
    wait_for_parts(parts, 4, client)
    cluster.workers[0].send_signal(signal.SIGKILL)  # mid-run: it holds a shard (--no-nanny: the worker itself)
    written = len(list(parts.glob("[0-9]*.skipped.csv")))  # shards whose rows the client has (or a shard more)
    stdout, stderr = client.communicate(timeout=300)
    assert client.returncode == 0, stderr
    same_predictions(out, in_process)
    # Dask ran again what the killed worker held (running, queued, or finished but not yet fetched by the
    # client), which here is at least one shard; never the shards whose rows the client had already written
    retried = re.fullmatch(r"on tcp://\S+: (\d+) shard\(s\) ran again after their worker was lost",
                           stdout.strip().splitlines()[-1])
    assert retried and 1 <= int(retried.group(1)) <= 101 - written, stdout


def test_a_killed_client_run_again_scores_only_the_missing_shards(cluster, photos, tiny_models, in_process, tmp_path):
    out, parts = tmp_path / "predictions.csv", tmp_path / "predictions.csv.parts"
    args = [photos, "--out", out, "--model", tiny_models[1], "--scheduler", cluster.address, "--shard-size", "5"]
    client = subprocess.Popen([sys.executable, "-m", "valence", "predict", *map(str, args)], cwd=ROOT,
                              env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_parts(parts, 10, client)
    client.send_signal(signal.SIGKILL)
    client.wait(30)
    done = len(list(parts.glob("[0-9]*.json")))  # a part is done once its manifest is written, after its CSVs
    assert not out.exists() and 9 <= done < 101
    result = predict(args)
    assert result.returncode == 0, result.stderr
    same_predictions(out, in_process)
    assert f"resuming: {done} of 101 shards already done" in result.stdout
    assert not parts.exists()


def test_an_unreachable_scheduler_is_one_line_and_leaves_nothing(photos, tiny_models, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    result = predict([photos, "--out", tmp_path / "p.csv", "--model", tiny_models[1], "--scheduler", address])
    assert result.returncode == 1 and time.monotonic() - start < 30
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: scheduler {address}: no answer within 10 s")
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_local_n_starts_worker_processes_here(photos, tiny_models, in_process, tmp_path):
    out = tmp_path / "predictions.csv"
    result = predict([photos, "--out", out, "--model", tiny_models[1], "--scheduler", "local:2", "--shard-size", "100"])
    assert result.returncode == 0, result.stderr
    same_predictions(out, in_process)
    refused = predict([photos, "--out", tmp_path / "none.csv", "--model", tiny_models[1], "--scheduler", "local:0"])
    assert refused.returncode == 1 and refused.stderr.strip().endswith("needs a whole number of workers N ≥ 1")


def test_a_worker_running_other_project_code_is_named_in_one_line(photos, tiny_models, tmp_path):
    import shutil

    other = tmp_path / "other"  # this project's package with one line changed, first on the worker's path
    shutil.copytree(ROOT / "valence", other / "valence", ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "valence/errors.py", "a") as f:
        f.write("# an edit the client does not have\n")
    stale = Cluster(workers=0)
    # the worker imports the copy: first on its PYTHONPATH, started outside this checkout (cwd comes first)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", stale.address, "--nthreads", "1",
                               "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"], cwd=tmp_path,
                              env=dict(environment(), PYTHONPATH=str(other)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(stale.address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
            assert client.run(lambda: __import__("valence").__file__) == {
                w: str(other / "valence/__init__.py") for w in client.scheduler_info()["workers"]}
        result = predict([photos, "--out", tmp_path / "p.csv", "--model", tiny_models[1], "--scheduler", stale.address])
    finally:
        worker.kill()
        stale.stop()
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(r"error: worker tcp://127\.0\.0\.1:\d+: valence code (\w+), this client valence code (?!\1)\w+ "
                        r"\(install the same project there: pip install -r requirements.txt, or an image built from "
                        r"this checkout\)", last), last
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.parts").exists()


def test_workers_read_photos_from_s3_and_skip_those_they_cannot_reach(photos, tiny_models, tmp_path):
    """s3:// URLs through fsspec: the cluster's CSV is in-process' byte for byte; workers whose store does not
    answer list its photos as skipped, with the reason, and score the rest."""
    import boto3

    with s3_server("photos") as endpoint:
        env = dict(environment(), **s3_environment(endpoint))
        store = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                             region_name="us-east-1")
        for path in sorted(photos.glob("photo0[0-3]?.png")):  # 40 photos
            store.upload_file(str(path), "photos", f"set/{path.name}")
        model = tiny_models[1]
        assert predict(["s3://photos/set", "--out", tmp_path / "in-process.csv", "--model", model], env).returncode == 0
        running = Cluster(worker_env=env)
        try:
            result = predict(["s3://photos/set", "--out", tmp_path / "cluster.csv", "--model", model,
                              "--scheduler", running.address, "--shard-size", 8], env)
        finally:
            running.stop()
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "cluster.csv").read_bytes() == (tmp_path / "in-process.csv").read_bytes()
        assert len(rows_of(tmp_path / "cluster.csv")) == 40
        cut_off = Cluster(worker_env=dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}"))
        try:
            result = predict(["s3://photos/set", photos / "photo499.png", "--out", tmp_path / "cut-off.csv",
                              "--model", model, "--scheduler", cut_off.address, "--shard-size", 8], env)
        finally:
            cut_off.stop()
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in rows_of(tmp_path / "cut-off.csv")] == [str(photos / "photo499.png")]
    assert "skipped 40 of 41 files:" in result.stderr
    assert "s3://photos/set/photo000.png: cannot read it (EndpointConnectionError: Could not connect" in result.stderr


def test_a_forged_or_truncated_part_is_scored_again_on_resume(photos, tiny_models, in_process, tmp_path,
                                                              monkeypatch):
    """The parts of a local:2 run (6 shards of 100: 500 photos and a text file) as a crash leaves them, but part 1
    forged (a consistent part, manifest and all, of other photos) and part 3's CSV truncated: the same command
    scores those two again, says why, and writes in-process' CSV byte for byte."""
    from valence import params
    from valence.use import predict_cluster
    from valence.use.predict import image_files

    monkeypatch.chdir(ROOT)  # the project's params.yaml, as the command reads it
    p = params.load("evaluate")
    out = tmp_path / "predictions.csv"
    files = image_files([str(photos)])
    _, _, _, parts = predict_cluster.predict_on_cluster("local:2", tiny_models[1], files, out, p.batch_size,
                                                        p.threshold, p.flip_average, 100, p.uncertain_band)
    assert sorted(x.name for x in parts.glob("*.json")) == [f"{i}.json" for i in range(6)] + ["recipe.json"]
    elsewhere = [{"path": str(tmp_path / f"other{i}.png"), "probability": 0.5, "label": "Positive"} for i in range(100)]
    predict_cluster.write_part(parts, 1, elsewhere, [], predict_cluster.stamps([str(f) for f in files[100:200]]))
    data = (parts / "3.csv").read_bytes()
    (parts / "3.csv").write_bytes(data[:len(data) // 2])
    result = predict([photos, "--out", out, "--model", tiny_models[1], "--scheduler", "local:2", "--shard-size", 100])
    assert result.returncode == 0, result.stderr
    assert f"part 1: rows do not match its shard (100 of its photos missing, first {files[100]}; 100 paths not in " \
           f"it, first {tmp_path}/other0.png); scoring it again" in result.stderr
    assert "part 3: its CSVs are not the ones its manifest describes (truncated or edited); scoring it again" \
           in result.stderr
    assert "resuming: 4 of 6 shards already done" in result.stdout and "200/200" in result.stderr  # two shards ran
    assert out.read_bytes() == in_process.read_bytes() and not parts.exists()
