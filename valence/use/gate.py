"""The server's doors: who may ask `valence serve` (valence.use.serve) and how much, as ASGI layers and
uvicorn settings.

Who may ask. With a token (``--token-file PATH``, else the environment variable VALENCE_TOKEN: the file wins),
every route needs ``Authorization: Bearer <token>`` but /healthz and the static pages (/, /docs and its
assets, /openapi.json), which hold nothing of this server; the page asks for the token on a 401. Binding an
address other than loopback without a token is refused unless ``--insecure``. A Host header outside
serve.allowed_hosts (localhost, 127.0.0.1, ::1, --host and the names listed) is 400, so DNS rebinding cannot
read answers; a request whose Origin is neither this server nor in serve.allowed_origins, or that a browser
marks ``Sec-Fetch-Site: cross-site``, is 403 before its body is read (a multipart POST is a "simple" request
browsers send from any page without asking first).

How much. At most serve.max_concurrent /predict and /explain requests are worked on at once and
serve.max_queued wait for a slot; beyond, 503 with Retry-After at once (/healthz keeps answering). A request
is cancelled when serve.deadline_s pass (504) or its client goes away, and so is its work: the batcher drops it
between chunks of serve.max_batch images, so an abandoned /explain stops costing forward passes within one
chunk. A client has serve.read_timeout_s for a request's headers (else the connection is closed) and again for
its body (408). Bad requests stop before the model: a body over serve.max_request_mb is 413 from its
Content-Length, or as soon as the bytes read pass the cap; more than serve.max_images files, or more than
serve.max_explain on /explain, 413; a file that is not an image is 415, a damaged one 400, one over
Image.MAX_IMAGE_PIXELS 413, and images whose headers add up to more than serve.max_request_megapixels 413,
each with a one-line reason, before anything is decoded.
"""
import asyncio
import collections
import contextlib
import ctypes
import hmac
import math
import os
import time
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from uvicorn.protocols.http.h11_impl import H11Protocol

from valence.errors import PipelineError
from valence.network import is_loopback

TOKEN_ENV = "VALENCE_TOKEN"
MIN_TOKEN_LENGTH = 16  # a shorter token is guessable: refused
WORK = ("/predict", "/explain")  # the routes that cost model time: slots, deadline, cancellation
STATIC = "/static-offline-docs"  # fastapi_offline's Swagger UI assets
# static pages and the probe: no token (they hold nothing of this server); /healthz skips the Host check too,
# for probes that address the container by its IP
PUBLIC = frozenset({"/", "/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
ROUTES = PUBLIC | {"/readyz", "/metrics", *WORK}  # metrics label every other path "other": bounded labels
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LEFT = "499"  # status recorded for a request whose client left before its answer (nginx's convention)


# --- who may ask: the token, the bind address, Host and Origin ---------------------------------------------

def read_token(token_file=None, environ=os.environ):
    """The bearer token: ``token_file``'s text (stripped), else $VALENCE_TOKEN, else None (no token needed).
    A file that cannot be read, or a token that is empty, short or not printable, is a one-line error."""
    if token_file is not None:
        try:
            token, source = Path(token_file).read_text(encoding="utf-8").strip(), str(token_file)
        except (OSError, UnicodeDecodeError) as err:
            raise PipelineError(f"{token_file}: cannot read the token file ({err.strerror or err})") from None
    elif TOKEN_ENV in environ:
        token, source = environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return None
    if not token:
        raise PipelineError(f"{source}: the token is empty; write one, e.g. "
                            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    if len(token) < MIN_TOKEN_LENGTH or not all("!" <= c <= "~" for c in token):
        raise PipelineError(f"{source}: the token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters "
                            "without spaces, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return token


def refuse_open_bind(host, token, insecure):
    """A server other machines can reach answers only with a token, unless the user says ``--insecure``."""
    if not token and not insecure and not is_loopback(host):
        raise PipelineError(f"--host {host} is reachable from other machines: give a token (--token-file PATH or "
                            f"{TOKEN_ENV}), or --insecure to serve without one")


def host_name(value):
    """The name in a Host header (bytes), lowercased, without its port or brackets."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")]
    name = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return name.rstrip(".")


def allowed_host_names(bound_host, extra):
    """(exact names, suffixes of "*.example.com" patterns, any) a Host header may name."""
    names = {*LOCAL_HOSTS, *(h.lower() for h in extra if not h.startswith("*"))}
    if bound_host not in ("0.0.0.0", "::", ""):  # a wildcard bind is no name a client uses
        names.add(bound_host.lower().strip("[]"))
    suffixes = tuple(h[1:].lower() for h in extra if h.startswith("*."))
    return frozenset(names), suffixes, "*" in extra


def json_answer(status, detail, headers=None):
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (tests run several apps in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("valence_requests", "HTTP requests answered, by route and status (499: the client "
                                "left first)", ["route", "status"], registry=self.registry)
        self.latency = Histogram("valence_request_seconds", "Time from a request's headers to its answer, by route",
                                 ["route"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.rejections = Counter("valence_rejections", "Requests refused or cut short to protect the service, by "
                                  "reason", ["reason"], registry=self.registry)
        self.scored = Counter("valence_images_scored", "Images through the model (twice the forward passes with "
                              "flip averaging)", registry=self.registry)
        self.queued = Gauge("valence_queue_depth", "/predict and /explain requests waiting for a slot",
                            registry=self.registry)
        self.working = Gauge("valence_requests_working", "/predict and /explain requests being worked on",
                             registry=self.registry)
        self.decoding = Gauge("valence_decoding_megapixels", "Megapixels being decoded now, all requests together",
                              registry=self.registry)

    def reject(self, reason):
        self.rejections.labels(reason).inc()


class Gate:
    """The service's first ASGI layer (inside Starlette's error handler), pure ASGI as it runs on every request:
    counts each request (route, status, latency), and refuses a Host not allowed (400) and a cross-origin request
    not allowed (403) before anything else."""

    def __init__(self, app, metrics, hosts, origins):
        self.app, self.metrics = app, metrics
        self.names, self.suffixes, self.any_host = hosts
        self.origins, self.any_origin = frozenset(o for o in origins if o != "*"), "*" in origins

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, started, status = scope["path"], time.perf_counter(), [LEFT]

        async def noting_send(message):
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            refusal = None if path == "/healthz" else self.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, noting_send)
            else:
                await self.app(scope, receive, noting_send)
        except Exception:
            status[0] = "500"  # Starlette's ServerErrorMiddleware, outside, answers it
            raise
        finally:
            route = path if path in ROUTES else STATIC if path.startswith(STATIC + "/") else "other"
            self.metrics.requests.labels(route, status[0]).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def refusal(self, scope):
        """The answer refusing this request, or None to let it in."""
        headers = dict(scope["headers"])
        host = headers.get(b"host")
        if host is None:
            self.metrics.reject("host")
            return json_answer(400, "no Host header")
        name = host_name(host)
        if not (self.any_host or name in self.names or self.suffixes and name.endswith(self.suffixes)):
            self.metrics.reject("host")
            return json_answer(400, f"Host {name!r} is not served here; add it to serve.allowed_hosts "
                                    "(or --allowed-hosts)")
        origin = headers.get(b"origin")
        if origin is not None:
            origin = origin.decode("latin-1")
            scheme, _, netloc = origin.partition("://")
            same = scheme in ("http", "https") and netloc.lower() == host.decode("latin-1").lower()
            if not (same or self.any_origin or origin in self.origins):
                self.metrics.reject("origin")
                return json_answer(403, f"a page from {origin} may not call this service (serve.allowed_origins)")
        elif headers.get(b"sec-fetch-site") in (b"cross-site", b"same-site") and not (
                headers.get(b"sec-fetch-mode") == b"navigate" and scope["method"] in ("GET", "HEAD")):
            self.metrics.reject("origin")  # a no-cors request from another site's page (no Origin header sent)
            return json_answer(403, "a request from another site's page may not call this service")
        return None


class Budget:
    """A weighted semaphore, first come first served: ``acquire(amount)`` waits until ``amount`` is free and no
    one is ahead in line; an amount larger than the whole budget waits for all of it. The server's slots (1 a
    request) and its pixel budget (megapixels a decode, valence.use.serve) are both one."""

    def __init__(self, total):
        self.total = self.free = total
        self.waiting = collections.deque()  # (amount, future) in line

    def in_use(self):
        return self.total - self.free

    async def acquire(self, amount):
        amount = min(amount, self.total)
        if not self.waiting and self.free >= amount:
            self.free -= amount
            return amount
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append((amount, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted as it was cancelled: pass it on
                self.release(amount)
            else:
                self.waiting.remove((amount, turn))  # out of the line, wherever it stood
                self._wake()
            raise
        return amount

    def release(self, amount):
        self.free += amount
        self._wake()

    def _wake(self):
        while self.waiting and (self.waiting[0][1].done() or self.waiting[0][0] <= self.free):
            amount, turn = self.waiting.popleft()
            if not turn.done():
                self.free -= amount
                turn.set_result(None)


class Slots:
    """At most ``working`` requests at work, at most ``waiting`` more in line (a Budget of one a request)."""

    class Full(Exception):
        pass

    def __init__(self, working, waiting):
        self.line, self.max_waiting, self.working = Budget(working), waiting, 0

    @property
    def waiting(self):
        return self.line.waiting

    async def enter(self):
        if (self.line.waiting or self.line.free < 1) and len(self.line.waiting) >= self.max_waiting:
            raise Slots.Full
        await self.line.acquire(1)
        self.working += 1

    def leave(self):
        self.working -= 1
        self.line.release(1)


class Door:
    """Inner ASGI layer (after CORS): the token, the body's size and read deadline, and for /predict and
    /explain a slot, the request deadline and cancellation when the client leaves."""

    def __init__(self, app, metrics, slots, token, limits):
        self.app, self.metrics, self.slots, self.limits = app, metrics, slots, limits
        self.token = token.encode() if token else None
        self.max_bytes = int(limits.max_request_mb * 2**20)
        self.typical_s = 1.0  # moving mean of a request's time at work: what Retry-After asks a client to wait

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, headers = scope["path"], dict(scope["headers"])
        if self.token and path not in PUBLIC and not path.startswith(STATIC + "/"):
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)):
                self.metrics.reject("token")
                refused = "the token was refused" if given else "this service needs its token"
                answer = json_answer(401, f"{refused}: send Authorization: Bearer <token>",
                                     {"WWW-Authenticate": "Bearer" + (' error="invalid_token"' if given else "")})
                return await answer(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            self.metrics.reject("body_size")
            return await json_answer(413, self.too_large(), {"Connection": "close"})(scope, receive, send)
        exchange = Exchange(self, receive)
        if path in WORK and scope["method"] == "POST":
            return await self.work(scope, exchange, send)
        await self.app(scope, exchange.receive, send)

    def too_large(self):
        return f"request body over the {self.max_bytes / 2**20:g} MB limit (serve.max_request_mb)"

    async def work(self, scope, exchange, send):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.deadline_s
        try:
            async with asyncio.timeout_at(deadline):
                await self.slots.enter()
        except Slots.Full:
            self.metrics.reject("queue_full")
            retry = math.ceil(self.typical_s * (1 + len(self.slots.waiting) / self.limits.max_concurrent))
            answer = json_answer(503, f"busy: {self.limits.max_concurrent} requests at work and "
                                      f"{self.limits.max_queued} waiting (serve.max_concurrent, serve.max_queued); "
                                      "try again later", {"Retry-After": str(max(1, retry))})
            return await answer(scope, exchange.receive, send)
        except TimeoutError:
            return await self.too_slow(scope, exchange, send)
        started, answered = loop.time(), []

        async def noting_send(message):
            if message["type"] == "http.response.start":
                answered.append(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                exchange.answered = True  # uvicorn reports a disconnect once the answer is out: not a client leaving
            await send(message)

        task = asyncio.create_task(self.app(scope, exchange.receive, noting_send))
        exchange.task = task
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0, deadline - loop.time()))
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                if not answered:
                    return await self.too_slow(scope, exchange, send)
            elif task.cancelled():
                if not exchange.left:
                    raise asyncio.CancelledError  # cancelled by no one here: pass it on
            else:
                task.result()  # an error in the handler: raised on, Starlette answers 500
        except asyncio.CancelledError:
            task.cancel()  # the server stops: the work stops with it
            raise
        finally:
            exchange.close()
            self.slots.leave()
            self.typical_s += 0.2 * (loop.time() - started - self.typical_s)

    async def too_slow(self, scope, exchange, send):
        self.metrics.reject("deadline")
        answer = json_answer(504, f"not done within {self.limits.deadline_s:g} s (serve.deadline_s); the work "
                                  "was cancelled", {"Connection": "close"})
        await answer(scope, exchange.receive, send)


class Exchange:
    """One request's receive channel: the body within serve.max_request_mb and serve.read_timeout_s, and once
    it is read, a watch for the client leaving that cancels the request's task."""

    def __init__(self, door, receive):
        self.door, self._receive = door, receive
        self.received, self.read_deadline, self.watcher, self.task = 0, None, None, None
        self.left = self.answered = False  # the client went away first; the answer is all sent

    async def receive(self):
        if self.watcher is not None:  # the body is read: the watcher has the channel; share its message
            return await asyncio.shield(self.watcher)
        loop = asyncio.get_running_loop()
        if self.read_deadline is None:
            self.read_deadline = loop.time() + self.door.limits.read_timeout_s
        try:
            async with asyncio.timeout_at(self.read_deadline):
                message = await self._receive()
        except TimeoutError:
            self.door.metrics.reject("read_timeout")
            raise HTTPException(408, f"the request body did not arrive within {self.door.limits.read_timeout_s:g} "
                                     "s (serve.read_timeout_s)", headers={"Connection": "close"}) from None
        if message["type"] == "http.disconnect":
            self.client_left()
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.door.max_bytes:
            self.door.metrics.reject("body_size")
            raise HTTPException(413, self.door.too_large(), headers={"Connection": "close"})
        if not message.get("more_body", False) and self.task is not None:
            self.watcher = asyncio.create_task(self.watch())
        return message

    async def watch(self):
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.task.done():
            self.client_left()
        return message

    def client_left(self):
        if self.task is not None and not self.task.done() and not self.left and not self.answered:
            self.left = True
            self.door.metrics.reject("client_left")
            self.task.cancel()

    def close(self):
        if self.watcher is not None and not self.watcher.done():
            self.watcher.cancel()


class HeaderTimeout(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers: uvicorn has none of its own, and its
    keep-alive timer restarts with every byte, so a client sending a header a byte at a time would hold its
    connection for ever. The connection is closed when the headers are not all there ``header_timeout``
    seconds after it opened or after the last answer on it."""

    header_timeout = 30.0

    def connection_made(self, transport):
        super().connection_made(transport)
        self._header_timer = None
        self._arm()

    def _arm(self):
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self):
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self):
        self._header_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def handle_events(self):
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request's headers are in: its body has serve.read_timeout_s of its own

    def on_response_complete(self):
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:
            self._arm()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)


def large_blocks_go_back():
    """Have glibc return each freed block of 1 MB or more to the system at once. By default it keeps freed memory
    in per-thread arenas and raises its mmap threshold after the first large free, so each decoding thread keeps
    room for the largest image it decoded and the server's memory grows by threads × that, whatever the pixel
    budget (measured: 1.1 GB either way for 16 flat 49 Mpx PNGs on 2 threads; 0.57 GB with this, 1.06 GB with it
    and no budget). Pillow allocates a large image in 16 MB blocks: each is mapped and unmapped on its own."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator, its own ways
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)


def server_config(app, host, port, limits):
    """uvicorn's settings for the service: its own limits from the serve section."""
    import uvicorn

    large_blocks_go_back()
    protocol = type("HeaderTimeout", (HeaderTimeout,), {"header_timeout": limits.read_timeout_s})
    return uvicorn.Config(app, host=host, port=port, log_level="info", http=protocol,
                          limit_concurrency=limits.max_connections, timeout_keep_alive=limits.keep_alive_s)
