"""Load on `python -m valence serve`: requests/second and latency percentiles, printed as one JSON line.

    python benchmarks/serve_load.py                              # models/model.keras, 200 requests, 8 at a time
    python benchmarks/serve_load.py --model models/model.tflite  # the export stage's LiteRT file
    python benchmarks/serve_load.py --url http://host:8000       # a server already running
    VALENCE_TOKEN=… python benchmarks/serve_load.py --url …       # one that needs its token (or --token-file PATH)
    python benchmarks/serve_load.py --route explain --photos-per-request 16 --concurrency 1 --requests 10

Starts the server on a free localhost port (unless --url), waits for /readyz, sends one warm-up request,
then --requests POST /predict (or --route explain) requests, each --photos-per-request test-split photos
(data/split/test.csv, in turn), at most --concurrency in flight. Reports requests/second over the whole run, p50/p95/max latency and the errors
(any status other than 200); writes the same to --out. The token, where one is given (--token-file, else
$VALENCE_TOKEN, as the server reads it), goes with every request, and to the server it starts.
"""
import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from valence.files import read_csv, write_json

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model, token_file, headers):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "valence", "serve", "--model", model, "--port", str(port),
                                *(["--token-file", token_file] if token_file else [])],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if process.poll() is not None:
            sys.exit(f"error: the server exited ({process.returncode}); run `python -m valence serve --model {model}`")
        try:
            if httpx.get(f"{url}/readyz", timeout=1, headers=headers).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    process.kill()
    sys.exit("error: the model did not load within 5 minutes")


async def load(url, photos, requests, concurrency, headers, route="predict", per_request=1):
    latencies, errors = [], []
    limit = asyncio.Semaphore(concurrency)

    async def one(client, i):
        chosen = [photos[(i * per_request + j) % len(photos)] for j in range(per_request)]
        async with limit:
            started = time.perf_counter()
            answer = await client.post(f"{url}/{route}", files=[("data", (p.name, p.read_bytes())) for p in chosen],
                                       headers=headers)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                errors.append(f"{chosen[0].name}: {answer.status_code} {answer.text[:200]}")

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency)) as client:
        await one(client, 0)  # warm-up: the first batch traces the model
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(requests)))
        return time.perf_counter() - started, latencies, errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="models/model.keras")
    parser.add_argument("--url", help="a running server instead of starting one")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--route", choices=["predict", "explain"], default="predict")
    parser.add_argument("--photos-per-request", type=int, default=1)
    parser.add_argument("--token-file", default=None, help="the server's bearer token (default: $VALENCE_TOKEN)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/serve_load-<model suffix>.json")
    args = parser.parse_args()
    photos = [ROOT / r["path"] for r in read_csv(ROOT / "data/split/test.csv", required=["path"])]
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get("VALENCE_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    process, url = (None, args.url) if args.url else start_server(args.model, args.token_file, headers)
    try:
        seconds, latencies, errors = asyncio.run(load(url, photos, args.requests, args.concurrency, headers,
                                                         args.route, args.photos_per_request))
    finally:
        if process:
            process.terminate()
            process.wait(30)
    ms = np.array(latencies) * 1000
    result = {"model": args.model, "route": args.route, "photos_per_request": args.photos_per_request,
              "requests": args.requests, "concurrency": args.concurrency,
              "requests_per_s": round(args.requests / seconds, 2), "p50_ms": round(float(np.percentile(ms, 50))),
              "p95_ms": round(float(np.percentile(ms, 95))), "max_ms": round(float(ms.max())),
              "errors": len(errors), "seconds": round(seconds, 1), "cpu": platform.processor() or platform.machine()}
    for error in errors[:5]:
        print(error, file=sys.stderr)
    write_json(args.out or f"benchmarks/results/serve_load-{Path(args.model).suffix.lstrip('.')}.json", result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
