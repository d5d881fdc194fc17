# The serving image: `python -m valence serve` on the export stage's LiteRT model, without TensorFlow.
#
#   dvc repro export                       # models/model.tflite (or: dvc pull models/model.tflite)
#   docker build -t valence .
#   docker run -p 8000:8000 -e VALENCE_TOKEN="$(cat token)" valence   # then http://127.0.0.1:8000/ (the page),
#                                          # /predict, /explain, /metrics with Authorization: Bearer <token>; /docs
#   docker run -p 8000:8000 -v "$PWD/token:/run/secrets/valence_token:ro" valence   # the token as a secret file
#                                          # (Docker/Compose secrets mount there; VALENCE_TOKEN_FILE names another)
#   docker run -p 8000:8000 -e VALENCE_TOKEN=… -e VALENCE_ALLOWED_HOSTS=valence.example.com valence
#                                          # clients that use a public name (the Host header); localhost needs none
#   docker run --network host -v /scratch:/scratch:ro -v "$PWD/certs:/certs:ro" valence dask worker \
#       tls://SCHEDULER:8786 --tls-ca-file /certs/ca.pem --tls-cert /certs/worker.pem --tls-key /certs/worker.key
#                                          # a Dask worker for `valence predict --scheduler` with a .tflite model
#                                          # (docs/guide.md: On a cluster; plain tcp:// only on a trusted network)
#
# The server binds 0.0.0.0 inside the container, so it starts only with a token (a token: `python -c 'import
# secrets; print(secrets.token_urlsafe(32))'`); without one it stops with a one-line error. /healthz needs none.
#
# PIP_OPTIONS: extra pip flags, e.g. "--no-index --find-links /src/wheels" to install from a wheelhouse put
# beside the Dockerfile (a machine whose pip needs its own CA bundle or mirror; tests/test_container.py does).
# The wheelhouse stays in the build stage: the image holds /venv, valence/, params.yaml, the model, LICENSE and
# NOTICE only.
FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# build: the virtual environment, from PyPI or the wheelhouse; only /venv and the files the server needs leave it
FROM base AS build
ARG PIP_OPTIONS=""
COPY . /src/
RUN python3 -m venv /venv \
    && /venv/bin/pip install --no-cache-dir --disable-pip-version-check $PIP_OPTIONS -r /src/requirements-serve.txt

FROM base
COPY --from=build /venv /venv
COPY --from=build /src/valence /app/valence
COPY --from=build /src/params.yaml /app/params.yaml
COPY --from=build /src/LICENSE /src/NOTICE /app/
COPY --from=build /src/models/model.tflite /app/models/model.tflite
RUN useradd --system --no-create-home --shell /usr/sbin/nologin valence
USER valence
WORKDIR /app
# PATH and PYTHONPATH: `dask worker` (a /venv/bin script) imports the package from /app like `python -m valence`
# VALENCE_TOKEN_FILE: the token's file, read when it exists (else $VALENCE_TOKEN, if set, is the token)
ENV PORT=8000 PYTHONUNBUFFERED=1 PATH=/venv/bin:$PATH PYTHONPATH=/app VALENCE_TOKEN_FILE=/run/secrets/valence_token
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"]
CMD ["/bin/sh", "-c", "if [ -e \"$VALENCE_TOKEN_FILE\" ]; then set -- --token-file \"$VALENCE_TOKEN_FILE\"; fi; exec /venv/bin/python -m valence serve --model models/model.tflite --host 0.0.0.0 --port \"$PORT\" ${VALENCE_ALLOWED_HOSTS:+--allowed-hosts \"$VALENCE_ALLOWED_HOSTS\"} \"$@\""]
