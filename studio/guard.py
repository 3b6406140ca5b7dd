"""What stands in front of the app's handlers, so that no single request or client can exhaust it:

- `RequestGuard` (ASGI middleware): a limit on every request body, counted as it arrives, so an
  inline base64 ``data:`` payload inside a JSON body cannot get past the upload limit; and the named
  HTTP routes (``/run/<name>``, ``/call/<name>``, ``/api/<name>``) answer only for public endpoints,
  so a handler wired for the page alone (``api_visibility="private"``) is not an HTTP API.
- `HideServerPaths` (ASGI middleware): Gradio names every file by its place in the server's cache
  (in `/config`, the page, upload answers, results, its own error messages); this shows that place
  as ``studio-cache/...`` on the way out and maps it back on the way in.
- `delete_failed_uploads`: an upload Gradio refuses or that breaks off leaves its temporary file
  behind (often empty); this deletes it.
- `cap_jobs_per_client`: a client's session holds at most a fixed number of places in the queue,
  waiting or running, and its address four times that (several people may share one address);
  beyond that it is refused with a sentence.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

PAGE_ROUTE = "predict"
API_ROUTE = re.compile(r"^/gradio_api/(?:run|api|call(?:/v2)?)/([^/]+)/?$")
TOO_LARGE = ("The request is {size} MB; the limit is {limit} MB. Upload large files as files, "
             "not inside the request.")
NOT_PUBLIC = "There is no public endpoint named '{name}'."
CAP_MESSAGE = ("You already have {count} requests waiting or running (at most {cap} at a time); "
               "wait for one to finish, then try again.")
ADDRESS_SHARE = 4  # an address may hold this many sessions' worth of places


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


class RequestGuard:
    """ASGI middleware: a body-size limit and public-only named routes (see the module docstring)."""

    def __init__(self, app, max_body_bytes: int, public_names: Callable[[], set[str]],
                 public_indices: Callable[[], set[int]], page_indices: Callable[[], set[int]] = set):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.public_names = public_names
        self.public_indices = public_indices
        self.page_indices = page_indices

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _refuse(send, 413, TOO_LARGE.format(size=_mb(int(declared)), limit=_mb(self.max_body_bytes)))
        named = API_ROUTE.match(scope.get("path", "")) if scope.get("method") == "POST" else None
        if named is not None:
            return await self._named_route(named.group(1), scope, receive, send)
        seen = 0
        refused = False

        async def counted_receive():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    refused = True
                    # the handler sees a client that went away; the client gets the 413 below
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def tracked_send(message):
            nonlocal started
            if refused and not started:
                return  # the 413 is sent instead of whatever the app tries to answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise
        if refused and not started:
            await _refuse(send, 413, TOO_LARGE.format(size=f"over {_mb(self.max_body_bytes)}",
                                                      limit=_mb(self.max_body_bytes)))

    async def _named_route(self, name: str, scope, receive, send):
        """A named route: refused unless the name is public; its body (small JSON) is read here
        first so that a ``fn_index`` naming a private handler is refused too. The page itself posts
        ``/run/predict`` with the index of a handler that skips the queue (an example filling the
        inputs, a preset): those cheap handlers stay reachable that way, and only that way."""
        if name not in self.public_names() and name != PAGE_ROUTE:
            return await _refuse(send, 404, NOT_PUBLIC.format(name=name[:80]))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _refuse(send, 413, TOO_LARGE.format(size=f"over {_mb(self.max_body_bytes)}",
                                                                  limit=_mb(self.max_body_bytes)))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            index = json.loads(body).get("fn_index") if body else None
        except (ValueError, AttributeError):
            index = None
        allowed = self.public_indices() | (self.page_indices() if name == PAGE_ROUTE else set())
        if (index is None and name == PAGE_ROUTE) or (index is not None and index not in allowed):
            return await _refuse(send, 404, NOT_PUBLIC.format(name=f"#{index}"))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send, status: int, text: str) -> None:
    body = json.dumps({"detail": text, "error": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


CACHE_ALIAS = "studio-cache"
REWRITTEN_TYPES = (b"application/json", b"text/event-stream", b"text/html", b"text/plain", b"application/javascript")


class HideServerPaths:
    """ASGI middleware: the server's cache folder appears as `CACHE_ALIAS` outside the server."""

    def __init__(self, app, cache_dir: str):
        self.app = app
        self.real = cache_dir.rstrip("/").encode() + b"/"
        self.alias = CACHE_ALIAS.encode() + b"/"

    def _inward(self, data: bytes) -> bytes:
        return data.replace(b'"' + self.alias, b'"' + self.real).replace(b"file=" + self.alias, b"file=" + self.real)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if f"file={CACHE_ALIAS}/" in path:
            scope = dict(scope, path=path.replace(f"file={CACHE_ALIAS}/", "file=" + self.real.decode()),
                         raw_path=self._inward(scope.get("raw_path") or b""))

        is_json = dict(scope.get("headers") or []).get(b"content-type", b"").startswith(b"application/json")

        async def inward_receive():
            message = await receive()
            if message["type"] != "http.request":
                return message
            body = message.get("body", b"")
            if is_json:  # whole, so that a path split across two chunks is still found
                while message.get("more_body", False):
                    message = await receive()
                    if message["type"] != "http.request":
                        return message
                    body += message.get("body", b"")
                message = {"type": "http.request", "body": body, "more_body": False}
            if self.alias in body:
                message = dict(message, body=self._inward(body))
            return message

        rewrite = False
        buffered: list[bytes] = []
        start: dict | None = None

        async def outward_send(message):
            nonlocal rewrite, start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                kind = headers.get(b"content-type", b"").split(b";")[0].strip()
                rewrite = kind in REWRITTEN_TYPES and b"content-encoding" not in headers
                if rewrite and b"content-length" in headers:
                    start = message  # sent with the new length once the whole body is here
                    return
                return await send(message)
            if message["type"] == "http.response.body" and rewrite:
                body = message.get("body", b"").replace(self.real, self.alias)
                if start is not None:
                    buffered.append(body)
                    if message.get("more_body", False):
                        return
                    whole = b"".join(buffered)
                    headers = [(k, v) for k, v in start.get("headers") or [] if k != b"content-length"]
                    await send(dict(start, headers=headers + [(b"content-length", str(len(whole)).encode())]))
                    return await send({"type": "http.response.body", "body": whole, "more_body": False})
                message = dict(message, body=body)
            await send(message)

        await self.app(scope, inward_receive, outward_send)


def delete_failed_uploads() -> None:
    """Make Gradio's upload parser delete the temporary files of an upload it gives up on (too large,
    malformed, or the client went away); it only closes them, so they pile up in the temp folder."""
    import os

    from gradio import route_utils

    parser = route_utils.GradioMultiPartParser
    if getattr(parser.parse, "_deletes_failed", False):
        return
    original = parser.parse

    async def parse(self):
        try:
            return await original(self)
        except BaseException:
            for handle in getattr(self, "_files_to_close_on_error", []):
                name = getattr(handle, "name", None)
                try:
                    handle.close()
                    if name:
                        os.unlink(name)
                except OSError:
                    pass
            raise

    parse._deletes_failed = True
    parser.parse = parse


def public_endpoints(blocks) -> tuple[set[str], set[int]]:
    """Names and indices of the handlers that are part of the public API."""
    names, indices = set(), set()
    for index, fn in blocks.fns.items():
        if getattr(fn, "api_visibility", "public") == "public" and fn.api_name:
            names.add(str(fn.api_name))
            indices.add(index)
    return names, indices


def page_endpoints(blocks) -> set[int]:
    """Indices of the handlers that skip the queue (the page calls them over ``/run/predict``)."""
    return {index for index, fn in blocks.fns.items() if not getattr(fn, "queue", True)}


def app_kwargs(blocks, max_body_bytes: int) -> dict[str, Any]:
    """`launch(app_kwargs=...)`: the guards as middleware of Gradio's FastAPI app (inside its
    compression, so they read plain bodies)."""
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware

    delete_failed_uploads()
    return {"middleware": [Middleware(RequestGuard, max_body_bytes=max_body_bytes,
                                      public_names=lambda: public_endpoints(blocks)[0],
                                      public_indices=lambda: public_endpoints(blocks)[1],
                                      page_indices=lambda: page_endpoints(blocks)),
                           Middleware(HideServerPaths, cache_dir=get_upload_folder())]}


# --- fair sharing -------------------------------------------------------------------------------

def client_address(request, trust_forwarded: bool) -> str | None:
    """The client's address. Behind a proxy (a Space's, or one on this machine or a private network,
    which is the only way a request can come from such a peer) it is the first forwarded address;
    a client reaching the server directly cannot choose it."""
    import ipaddress

    if request is None:
        return None
    client = getattr(request, "client", None)
    peer = getattr(client, "host", None)
    try:
        behind_proxy = trust_forwarded or (peer is not None and ipaddress.ip_address(peer).is_private)
    except ValueError:
        behind_proxy = trust_forwarded
    forwarded = request.headers.get("x-forwarded-for") if behind_proxy else None
    return forwarded.split(",")[0].strip() if forwarded else peer


def jobs_of(queue, session_hash: str | None, address: str | None, trust_forwarded: bool,
            lanes: tuple[str, ...] | None = None) -> tuple[int, int]:
    """How many events of this session (in ``lanes`` only, when given) and of this address (all)
    are waiting or running."""
    events = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
    events += [e for jobs in queue.active_jobs if jobs for e in jobs]
    by_session = by_address = 0
    for event in events:
        in_lane = lanes is None or getattr(getattr(event, "fn", None), "concurrency_id", None) in lanes
        by_session += in_lane and session_hash is not None and event.session_hash == session_hash
        by_address += address is not None and client_address(event.request, trust_forwarded) == address
    return by_session, by_address


def cap_jobs_per_client(queue, cap: int, trust_forwarded: bool = False, lanes: tuple[str, ...] | None = None) -> None:
    """Refuse a client's request once its session holds ``cap`` places (waiting or running) in
    ``queue``, or its address ``ADDRESS_SHARE * cap``. With ``lanes`` (concurrency ids: the model
    runs) only those count toward a session's cap, so quick re-renders of a session's own result
    (a slider moved) are never refused while its model run waits; every event counts toward the
    address's cap, so a flood of them is bounded too.

    Gradio's queue has one global size limit only; this wraps its ``push`` (the one door every
    queued request goes through) with a per-client count. A refused request gets HTTP 400 with the
    sentence as its detail: the page shows that detail as the error (for a 503 it would show its own
    "busy" line instead).
    """
    original = queue.push

    async def push(body, request, username):
        address = client_address(request, trust_forwarded)
        by_session, by_address = jobs_of(queue, getattr(body, "session_hash", None), address, trust_forwarded, lanes)
        fn = getattr(getattr(queue, "blocks", None), "fns", {}).get(getattr(body, "fn_index", None))
        counted = lanes is None or getattr(fn, "concurrency_id", None) in lanes
        if counted and by_session >= cap:
            return False, CAP_MESSAGE.format(count=by_session, cap=cap), "error"
        if by_address >= ADDRESS_SHARE * cap:
            return False, CAP_MESSAGE.format(count=by_address, cap=ADDRESS_SHARE * cap).replace(
                "You already have", "Your address already has"), "error"
        return await original(body, request, username)

    queue.push = push
