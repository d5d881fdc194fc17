"""The trained model over HTTP: FastAPI on uvicorn, fit to face a network.

    python -m valence serve [--model models/model.tflite] [--host 127.0.0.1] [--port 8000] [--token-file PATH]
    curl -F data=@beach.jpg -F data=@crash.jpg http://127.0.0.1:8000/predict
    curl -H "Authorization: Bearer $VALENCE_TOKEN" -F data=@beach.jpg http://valence.example.com:8000/predict

POST /predict takes one or more images in the multipart field ``data`` (the seed's Flask server used that name)
and answers ``{"model": <MD5 of the model file>, "provenance": {...}, "predictions": [{"filename", "probability",
"label"}]}`` (plus "valence" and "arousal", on the training ratings' scale, from a model with rating heads;
"ratings" gives their scales) in upload order. "provenance" is the model's identity, found once when it loads
(valence.use.provenance: its md5, the metadata embedded in it, and the commit, artifact and version where the
repository records this very file; not the file's name). POST /explain takes the same and adds each
photo's map (valence.use.explain: the frozen release's own, from the pass that scores it; an occlusion map for
other models): ``{"model", "provenance", "method", "grid": [rows, columns], "explanations": [{"filename",
"probability", "label", "map"}]}``. GET / is a page to try it. GET /healthz says the process is up, GET /readyz
that the model is loaded (its md5, never a file path: no answer names a file of the server), GET /metrics counts
requests, latency, queue depth and refusals in Prometheus' text format; /docs is the OpenAPI page (Swagger UI
from the installed package: it works offline). A ``.tflite`` model (the export stage's) is served by LiteRT
without importing TensorFlow.

Who may ask and how much: valence.use.gate (the token, Host and Origin checks, slots, deadlines).

Memory. Decoding is the costly part: a decoded image takes up to ~21 bytes a pixel while it is converted and
resized (peaks measured: 6 for greyscale, 12 for 8-bit RGB and JPEG, 14 for palette, 20 for RGBA, 21 for 16-bit
PNG). Every decode, over all requests, first takes its pixels from one shared budget of
serve.max_decoding_megapixels (an image larger than the budget takes all of it), and gives them back when its
thread is done, even for a cancelled request; freed blocks go back to the system at once
(valence.use.gate.large_blocks_go_back). So the decodes in flight hold at most max(serve.max_decoding_megapixels, 50) Mpx ×
21 bytes ≈ 1 GB with the defaults (0.6 GB of JPEGs); besides that, the bodies of the requests at work hold at most serve.max_concurrent × serve.max_request_mb
(80 MB) and their model inputs (an occlusion /explain photo's 51 covered copies at a time) a few MB each, on top of the
model itself. Decoded images from concurrent requests are scored together: one inference thread takes the
images waiting, up to serve.max_batch, whenever it becomes free, so the event loop never blocks and a busy
server runs larger batches.
"""
import asyncio
import collections
import contextlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import Depends, File, HTTPException, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from valence import __version__
from valence.config import LOGIT_MAP, PROBABILITY
from valence.data.images import NotAnImage, TooManyPixels, decode, model_input
from valence.data.labels import label_of
from valence.runtime import cores
from valence.use.classifier import open_classifier
from valence.use.explain import method, occlusion_job
from valence.use.gate import Budget, Door, Gate, Metrics, Slots, allowed_host_names
from valence.use.predict import score_all, values_beside_probability
from valence.use.provenance import identity, made_by, source, trained_by

log = logging.getLogger("valence.use.serve")


# --- the work: decoding within a pixel budget, scoring in shared batches ----------------------------------

PixelBudget = Budget  # megapixels being decoded, over all requests (a decode larger than it waits for all)


def header_megapixels(content):
    """Megapixels of an upload read from its header (nothing decoded); 0 where decode will refuse it before
    decoding (not an image, unreadable header, over Image.MAX_IMAGE_PIXELS)."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            pixels = image.width * image.height
    except Exception:  # noqa: BLE001 — decode_upload gives the reason, from the same header
        return 0.0
    return 0.0 if pixels > Image.MAX_IMAGE_PIXELS else pixels / 1e6


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


def scales(classifier):
    """{"ratings": {rating: {"low", "high"}}} of a model with rating heads, to sit beside its answers; {} without."""
    if not classifier.ratings:
        return {}
    return {"ratings": {k: {"low": low, "high": high} for k, (low, high) in classifier.ratings.items()}}


class Job:
    """Images of one request waiting to be scored, and the scores of those done so far."""

    __slots__ = ("images", "future", "done", "parts")

    def __init__(self, images, future):
        self.images, self.future, self.done, self.parts = images, future, 0, []


class Batcher:
    """Scores uint8 batches from concurrent requests on one inference thread: each batch takes up to
    ``max_batch`` images from the requests waiting, in turn, so a large request (an /explain) goes in chunks,
    others get their turn between them, and one whose client left is dropped before its next chunk."""

    def __init__(self, classifier, flip_average, max_batch, scored=None):
        self.classifier, self.flip_average, self.max_batch, self.scored = classifier, flip_average, max_batch, scored
        self.jobs, self.ready = collections.deque(), asyncio.Event()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="inference")  # models run on one thread

    async def score(self, images):
        job = Job(images, asyncio.get_running_loop().create_future())
        self.jobs.append(job)
        self.ready.set()
        return await job.future  # a cancelled request cancels the future: run() drops the job

    def take(self):
        """[(job, start, stop)]: the next batch, the head job's images first, then the next job's."""
        self.jobs = collections.deque(job for job in self.jobs if not job.future.done())
        taken, size = [], 0
        for job in self.jobs:
            n = min(self.max_batch - size, len(job.images) - job.done)
            if n <= 0:
                break
            taken.append((job, job.done, job.done + n))
            size += n
        return taken

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            await self.ready.wait()
            self.ready.clear()
            while taken := self.take():
                batch = np.concatenate([job.images[start:stop] for job, start, stop in taken])
                try:
                    scores = await loop.run_in_executor(self.thread, score_all, self.classifier, batch,
                                                        self.flip_average)
                except Exception as err:  # noqa: BLE001 — the requests in the batch get the failure, the loop goes on
                    log.exception("inference failed")
                    for job, _, _ in taken:
                        if not job.future.done():
                            job.future.set_exception(err)
                    continue
                if self.scored is not None:
                    self.scored.inc(len(batch))
                self.hand_out(taken, scores)

    def hand_out(self, taken, scores):
        at = 0
        for job, start, stop in taken:
            job.parts.append({k: v[at:at + stop - start] for k, v in scores.items()})
            job.done, at = stop, at + stop - start
            if stop == len(job.images) and not job.future.done():
                job.future.set_result({k: np.concatenate([part[k] for part in job.parts]) for k in scores})
        if self.jobs and 0 < self.jobs[0].done < len(self.jobs[0].images):
            self.jobs.rotate(-1)  # the head job had a chunk and has more: the others go first next


def open_model(path):
    """The classifier in ``path`` and its identity (valence.use.provenance), found once as it loads, without the
    file's name: no answer names a file of the server."""
    return open_classifier(path), {k: v for k, v in identity(path).items() if k != "file"}


# --- the app ------------------------------------------------------------------------------------------------

def create_app(model_path, limits, token=None, host="127.0.0.1", threshold=0.5, flip_average=False, band=0.0,
               on_load_error=None):
    """The service for ``model_path`` under ``limits`` (valence.params.ServeParams); ``token``: the bearer token
    every route but the public ones needs (None: none); ``host``: the address bound, a Host name allowed. The
    model loads in the background once the server starts, so /healthz answers at once and /readyz turns 200 when
    it is loaded. ``on_load_error(message)`` is called if loading fails (the CLI stops the server then)."""
    state = {"classifier": None, "error": None, "provenance": None}
    metrics, slots = Metrics(), Slots(limits.max_concurrent, limits.max_queued)
    budget = PixelBudget(float(limits.max_decoding_megapixels))
    decoders = ThreadPoolExecutor(cores(), thread_name_prefix="decode")
    metrics.queued.set_function(lambda: len(slots.waiting))
    metrics.working.set_function(lambda: slots.working)
    metrics.decoding.set_function(budget.in_use)

    async def load():
        try:
            classifier, provenance = await asyncio.to_thread(open_model, model_path)
        except Exception as err:  # noqa: BLE001 — reported to the log and the caller, not raised into asyncio
            state["error"] = "the model could not be loaded (the server's log says why)"
            log.error("cannot serve %s: %s", model_path, err)
            if on_load_error:
                on_load_error(str(err))
            return
        batcher = Batcher(classifier, flip_average, limits.max_batch, metrics.scored)
        state["batcher_task"] = asyncio.create_task(batcher.run())
        state["classifier"], state["batcher"], state["provenance"] = classifier, batcher, provenance
        log.info("valence %s serving %s (md5 %s, %s%s)%s", __version__, classifier.path, classifier.version,
                 made_by(provenance), f", {source(provenance)}" if source(provenance) else "",
                 "; every route but /healthz and the static pages needs the token" if token else "")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loading = asyncio.create_task(load())
        yield
        loading.cancel()
        if "batcher_task" in state:
            state["batcher_task"].cancel()
        decoders.shutdown(wait=False, cancel_futures=True)

    # FastAPIOffline: /docs with Swagger UI served from the package, not from a CDN, so it works offline
    app = FastAPIOffline(title="valence", summary="Positive or negative: the emotion a photo evokes.",
                         lifespan=lifespan)
    # with a token, the OpenAPI page lists it, so Swagger UI's Authorize button sends it (the Door checks it)
    guarded = [Depends(HTTPBearer(auto_error=False))] if token else []

    page = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def home():
        """A page to try the model: pick or drop photos, see P(Positive), the label and the map of each."""
        return page

    @app.get("/healthz")
    async def healthz():
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", dependencies=guarded)
    async def readyz():
        """The model is loaded: 200 with its version (md5) and the valence versions that trained it (null where
        the file records none) and that serve it, else 503 (loading, or failed)."""
        classifier = state["classifier"]
        if classifier is None:
            return JSONResponse({"status": "failed" if state["error"] else "loading", "detail": state["error"]},
                                status_code=503)
        return {"status": "ready", "model": classifier.version,
                "model_valence_version": trained_by(state["provenance"]),
                "valence_version": __version__}

    @app.get("/metrics", dependencies=guarded, response_class=Response)
    async def prometheus_metrics():
        """Requests by route and status, latency, queue depth, refusals by reason, images scored: Prometheus text."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def refuse(status, reason, detail):
        metrics.reject(reason)
        raise HTTPException(status, detail)

    async def decoded(name, content, megapixels, height, width):
        """One upload decoded in a thread once its pixels fit the shared budget; they go back to the budget when
        the thread is done, even if the request is cancelled before (the thread cannot be stopped)."""
        if not megapixels:  # decode refuses it from its header, before decoding: no budget needed
            return decode_upload(name, content, height, width)
        loop = asyncio.get_running_loop()
        taken = await budget.acquire(megapixels)
        try:
            future = decoders.submit(decode_upload, name, content, height, width)
        except BaseException:
            budget.release(taken)
            raise

        def give_back(_):
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone anyway
                loop.call_soon_threadsafe(budget.release, taken)

        future.add_done_callback(give_back)
        return await asyncio.wrap_future(future)

    async def uploaded(data, most=None):
        """(classifier, names, model inputs) of a request's uploads; every refusal before the model runs."""
        classifier = state["classifier"]
        if classifier is None:
            raise HTTPException(503, state["error"] or "the model is not loaded yet")
        if len(data) > limits.max_images:
            refuse(413, "too_many_images", f"{len(data)} images in one request; at most {limits.max_images} "
                                           "(serve.max_images)")
        if most is not None and len(data) > most:
            refuse(413, "too_many_images", f"{len(data)} images in one /explain; at most {most} (serve.max_explain)")
        contents = [await upload.read() for upload in data]
        names = [upload.filename or f"file {i + 1}" for i, upload in enumerate(data)]
        sizes = await asyncio.get_running_loop().run_in_executor(decoders, lambda: [header_megapixels(c)
                                                                                    for c in contents])
        if sum(sizes) > limits.max_request_megapixels:
            refuse(413, "pixels", f"{sum(sizes):.0f} megapixels in one request; at most "
                                  f"{limits.max_request_megapixels:g} (serve.max_request_megapixels)")
        images = await asyncio.gather(*(decoded(name, content, megapixels, classifier.height, classifier.width)
                                        for name, content, megapixels in zip(names, contents, sizes)),
                                      return_exceptions=True)
        refused = next((err for err in images if isinstance(err, BaseException)), None)
        if refused is not None:  # the first bad file in upload order names the reason
            raise refused
        return classifier, names, images

    @app.post("/predict", dependencies=guarded)
    async def predict(data: list[UploadFile] = File(..., description="one or more images")):
        """P(Positive) and the label for each uploaded image, in upload order, and the predicted ratings (valence,
        arousal) where the model learnt them."""
        classifier, names, images = await uploaded(data)
        scores = await state["batcher"].score(np.stack(images))
        answer = {"model": classifier.version, "provenance": state["provenance"],
                  "predictions": [{"filename": name, PROBABILITY: round(float(p), 6), "label": label_of(p, threshold, band),
                                   **values_beside_probability(classifier, scores, i)}
                                  for i, (name, p) in enumerate(zip(names, scores[PROBABILITY]))]}
        return {**answer, **scales(classifier)}

    @app.post("/explain", dependencies=guarded)
    async def explain(data: list[UploadFile] = File(..., description="one or more images")):
        """For each uploaded image, P(Positive), the label and its map (``grid``: [rows, columns]; ``method``
        says which: the frozen model's class activation map, cells summing to the logit, or an occlusion map, how
        much each region pushes P(Positive) up, or down where negative), in upload order."""
        classifier = state["classifier"]
        occluding = classifier is not None and not classifier.logit_map  # 50 passes a photo: serve.max_explain
        classifier, names, images = await uploaded(data, most=limits.max_explain if occluding else None)
        if occluding:  # one job per photo: it and its covered copies
            found = []
            for image in images:
                batch, read = occlusion_job(image)
                found.append(read(await state["batcher"].score(batch)))
            scores = {k: np.concatenate([photo[k] for photo, _ in found]) for k in found[0][0]}
            maps = np.array([heat for _, heat in found])
        else:  # the map comes with the scores: one job for all
            scores = await state["batcher"].score(np.stack(images))
            maps = scores.pop(LOGIT_MAP)
        explanations = [{"filename": name, PROBABILITY: round(float(p), 6), "label": label_of(p, threshold, band),
                         "map": np.round(heat.astype(float), 6).tolist(), **values_beside_probability(classifier, scores, i)}
                        for i, (name, p, heat) in enumerate(zip(names, scores[PROBABILITY], maps))]
        return {"model": classifier.version, "provenance": state["provenance"], "method": method(classifier),
                "grid": list(maps.shape[1:]), "explanations": explanations, **scales(classifier)}

    # last added is outermost: Gate (Host, Origin, metrics), CORS for the allowed origins, Door (token, limits)
    app.add_middleware(Door, metrics=metrics, slots=slots, token=token, limits=limits)
    if limits.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(limits.allowed_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization"], max_age=600)
    app.add_middleware(Gate, metrics=metrics, hosts=allowed_host_names(host, limits.allowed_hosts),
                       origins=limits.allowed_origins)
    return app
