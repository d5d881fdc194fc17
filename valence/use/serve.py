"""The trained model over HTTP: FastAPI on uvicorn.

    python -m valence serve [--model models/model.keras] [--host 127.0.0.1] [--port 8000]
    curl -F data=@beach.jpg -F data=@crash.jpg http://127.0.0.1:8000/predict

POST /predict takes one or more images in the multipart field ``data`` (the seed's Flask server used that
name) and answers ``{"model": <MD5 of the model file>, "predictions": [{"filename", "probability", "label"}]}``
(plus "valence" and "arousal", on the training ratings' scale, from a model with rating heads; "ratings" gives
their scales)
in upload order. POST /explain takes the same and adds each photo's occlusion map (valence.use.explain): ``{"model",
"method", "grid", "explanations": [{"filename", "probability", "label", "map"}]}``. GET / is a page to try it. GET /healthz says the process is up, GET /readyz that the model is loaded; /docs is the
OpenAPI page (Swagger UI from the installed package: it works offline). A ``.tflite`` model (the export stage's) is served by LiteRT without importing TensorFlow.

Bad requests stop before the model: a body over ``serve.max_request_mb`` is refused with 413 from its
Content-Length, or as soon as the bytes read pass the cap; more than ``serve.max_images`` files is 413; a file
that is not an image is 415, a damaged one 400, one with too many pixels 413, each with a one-line reason.
Images from concurrent requests are decoded in threads and scored together: one inference thread takes every
image waiting when it becomes free, so the event loop never blocks and a busy server runs larger batches.
"""
import asyncio
import contextlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import File, HTTPException, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline

from valence.config import PROBABILITY
from valence.data.images import NotAnImage, TooManyPixels, decode, model_input
from valence.data.labels import label_of
from valence.use.classifier import open_classifier
from valence.use.explain import GRID, METHOD, occluded, occlusion_map
from valence.use.predict import score_all, values_beside_probability

log = logging.getLogger("valence.use.serve")


class LimitRequestSize:
    """ASGI middleware: 413 for a body over ``max_bytes``, judged by Content-Length before any byte is read,
    and by counting as it streams in (chunked uploads, or a Content-Length that lies)."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over the {self.max_bytes / 2**20:g} MB limit (serve.max_request_mb)"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse({"detail": too_large}, status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, too_large, headers={"Connection": "close"})
            return message

        await self.app(scope, counting_receive, send)


def scales(classifier):
    """{"ratings": {rating: {"low", "high"}}} of a model with rating heads, to sit beside its answers; {} without."""
    if not classifier.ratings:
        return {}
    return {"ratings": {k: {"low": low, "high": high} for k, (low, high) in classifier.ratings.items()}}


class Batcher:
    """Scores uint8 batches from concurrent requests on one inference thread, several requests per batch."""

    def __init__(self, classifier, flip_average, max_batch):
        self.classifier, self.flip_average, self.max_batch = classifier, flip_average, max_batch
        self.queue = asyncio.Queue()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="inference")  # models run on one thread

    async def score(self, images):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((images, future))
        return await future

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            size = len(waiting[0][0])
            while size < self.max_batch and not self.queue.empty():  # whatever queued while the last batch ran
                waiting.append(self.queue.get_nowait())
                size += len(waiting[-1][0])
            try:
                batch = np.concatenate([images for images, _ in waiting])
                scores = await loop.run_in_executor(self.thread, score_all, self.classifier, batch,
                                                    self.flip_average)
            except Exception as err:  # noqa: BLE001 — every waiting request gets the failure, the loop goes on
                log.exception("inference failed")
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(err)
                continue
            start = 0
            for images, future in waiting:
                if not future.done():  # a client that went away cancelled its future
                    future.set_result({k: v[start:start + len(images)] for k, v in scores.items()})
                start += len(images)


def decode_upload(filename, content, height, width):
    """An upload as model input, or the HTTPException that refuses it (nothing of it reaches the model)."""
    try:
        return model_input(decode(io.BytesIO(content)), height, width)
    except NotAnImage as err:
        raise HTTPException(415, f"{filename}: {err}") from None
    except TooManyPixels as err:
        raise HTTPException(413, f"{filename}: {err}") from None
    except ValueError as err:
        raise HTTPException(400, f"{filename}: {err}") from None


def create_app(model_path, max_request_mb=10.0, max_images=16, max_batch=64, threshold=0.5,
               flip_average=False, on_load_error=None):
    """The service for ``model_path``; the model loads in the background once the server starts, so
    /healthz answers at once and /readyz turns 200 when it is loaded. ``on_load_error(message)`` is called if
    loading fails (the CLI stops the server then)."""
    state = {"classifier": None, "error": None}

    async def load():
        try:
            classifier = await asyncio.to_thread(open_classifier, model_path)
        except Exception as err:  # noqa: BLE001 — reported on /readyz and to the caller, not raised into asyncio
            state["error"] = str(err)
            log.error("cannot serve %s: %s", model_path, err)
            if on_load_error:
                on_load_error(str(err))
            return
        batcher = Batcher(classifier, flip_average, max_batch)
        state["batcher_task"] = asyncio.create_task(batcher.run())
        state["classifier"], state["batcher"] = classifier, batcher
        log.info("serving %s (md5 %s)", classifier.path, classifier.version)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loading = asyncio.create_task(load())
        yield
        loading.cancel()
        if "batcher_task" in state:
            state["batcher_task"].cancel()

    # FastAPIOffline: /docs with Swagger UI served from the package, not from a CDN, so it works offline
    app = FastAPIOffline(title="valence", summary="Positive or negative: the emotion a photo evokes.",
                         lifespan=lifespan)

    page = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def home():
        """A page to try the model: pick or drop photos, see P(Positive), the label and the map of each."""
        return page

    @app.get("/healthz")
    async def healthz():
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """The model is loaded: 200 with its version, else 503 (loading, or the reason it failed)."""
        classifier = state["classifier"]
        if classifier is None:
            return JSONResponse({"status": "failed" if state["error"] else "loading", "detail": state["error"]},
                                status_code=503)
        return {"status": "ready", "model": classifier.version, "path": classifier.path}

    async def uploaded(data):
        """(classifier, names, model inputs) of a request's uploads; every refusal before the model runs."""
        classifier = state["classifier"]
        if classifier is None:
            raise HTTPException(503, "the model is not loaded yet" if not state["error"] else state["error"])
        if len(data) > max_images:
            raise HTTPException(413, f"{len(data)} images in one request; at most {max_images} (serve.max_images)")
        contents = [await upload.read() for upload in data]
        names = [upload.filename or f"file {i + 1}" for i, upload in enumerate(data)]
        images = await asyncio.gather(*(asyncio.to_thread(decode_upload, name, content, classifier.height,
                                                          classifier.width) for name, content in zip(names, contents)),
                                      return_exceptions=True)
        refused = next((err for err in images if isinstance(err, Exception)), None)
        if refused is not None:  # the first bad file in upload order names the reason
            raise refused
        return classifier, names, images

    @app.post("/predict")
    async def predict(data: list[UploadFile] = File(..., description="one or more images")):
        """P(Positive) and the label for each uploaded image, in upload order, and the predicted ratings (valence,
        arousal) where the model learnt them."""
        classifier, names, images = await uploaded(data)
        scores = await state["batcher"].score(np.stack(images))
        answer = {"model": classifier.version,
                  "predictions": [{"filename": name, PROBABILITY: round(float(p), 6), "label": label_of(p, threshold),
                                   **values_beside_probability(classifier, scores, i)}
                                  for i, (name, p) in enumerate(zip(names, scores[PROBABILITY]))]}
        return {**answer, **scales(classifier)}

    @app.post("/explain")
    async def explain(data: list[UploadFile] = File(..., description="one or more images")):
        """For each uploaded image, P(Positive), the label and its occlusion map (``grid`` rows of ``grid``
        values: how much each region pushes P(Positive) up, or down where negative), in upload order."""
        classifier, names, images = await uploaded(data)
        explanations = []
        for name, image in zip(names, images):  # one batch per photo: it and its covered copies
            covered, positions = occluded(image)
            scored = await state["batcher"].score(np.concatenate([image[None], covered]))
            scores = np.asarray(scored[PROBABILITY], dtype=float)
            heat = occlusion_map(scores[0], scores[1:], positions)
            explanations.append({"filename": name, PROBABILITY: round(scores[0], 6),
                                 "label": label_of(scores[0], threshold), "map": np.round(heat.astype(float), 6).tolist(),
                                 **values_beside_probability(classifier, scored, 0)})
        return {"model": classifier.version, "method": METHOD, "grid": GRID, "explanations": explanations,
                **scales(classifier)}

    app.add_middleware(LimitRequestSize, max_bytes=int(max_request_mb * 2**20))
    return app
