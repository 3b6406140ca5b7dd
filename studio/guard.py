"""What stands in front of the app's handlers, so that no single request or client can exhaust it:

- `RequestGuard` (ASGI middleware): a limit on every request body, counted as it arrives, so an
  inline base64 ``data:`` payload inside a JSON body cannot get past the upload limit; and the named
  HTTP routes (``/run/<name>``, ``/call/<name>``, ``/api/<name>``) answer only for public endpoints,
  so a handler wired for the page alone (``api_visibility="private"``) is not an HTTP API.
- `cap_jobs_per_client`: a client (its session, and its address) holds at most a fixed number of
  places in the queue, waiting or running; beyond that it is refused with a sentence.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

API_ROUTE = re.compile(r"^/gradio_api/(?:run|api|call(?:/v2)?)/([^/]+)/?$")
TOO_LARGE = ("The request is {size} MB; the limit is {limit} MB. Upload large files as files, "
             "not inside the request.")
NOT_PUBLIC = "There is no public endpoint named '{name}'."
CAP_MESSAGE = ("You already have {count} requests waiting or running (at most {cap} at a time); "
               "wait for one to finish, then try again.")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


class RequestGuard:
    """ASGI middleware: a body-size limit and public-only named routes (see the module docstring)."""

    def __init__(self, app, max_body_bytes: int, public_names: Callable[[], set[str]],
                 public_indices: Callable[[], set[int]]):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.public_names = public_names
        self.public_indices = public_indices

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
        first so that a ``fn_index`` naming a private handler is refused too."""
        if name not in self.public_names():
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
        if index is not None and index not in self.public_indices():
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


def public_endpoints(blocks) -> tuple[set[str], set[int]]:
    """Names and indices of the handlers that are part of the public API."""
    names, indices = set(), set()
    for index, fn in blocks.fns.items():
        if getattr(fn, "api_visibility", "public") == "public" and fn.api_name:
            names.add(str(fn.api_name))
            indices.add(index)
    return names, indices


def app_kwargs(blocks, max_body_bytes: int) -> dict[str, Any]:
    """`launch(app_kwargs=...)`: the guard as the outermost middleware of Gradio's FastAPI app."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(RequestGuard, max_body_bytes=max_body_bytes,
                                      public_names=lambda: public_endpoints(blocks)[0],
                                      public_indices=lambda: public_endpoints(blocks)[1])]}


# --- fair sharing -------------------------------------------------------------------------------

def client_address(request, trust_forwarded: bool) -> str | None:
    """The client's address; behind a trusted proxy (a Space) the first forwarded one."""
    if request is None:
        return None
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def jobs_of(queue, session_hash: str | None, address: str | None, trust_forwarded: bool) -> int:
    """How many events of this session or this address are waiting or running."""
    events = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
    events += [e for jobs in queue.active_jobs if jobs for e in jobs]
    count = 0
    for event in events:
        same_session = session_hash is not None and event.session_hash == session_hash
        same_address = address is not None and client_address(event.request, trust_forwarded) == address
        count += same_session or same_address
    return count


def cap_jobs_per_client(queue, cap: int, trust_forwarded: bool = False) -> None:
    """Refuse a client's request once it holds ``cap`` places (waiting or running) in ``queue``.

    Gradio's queue has one global size limit only; this wraps its ``push`` (the one door every
    queued request goes through) with a per-client count. A refused request gets HTTP 503 with the
    sentence as its detail, which the page and `gradio_client` show as the error.
    """
    original = queue.push

    async def push(body, request, username):
        address = client_address(request, trust_forwarded)
        count = jobs_of(queue, getattr(body, "session_hash", None), address, trust_forwarded)
        if count >= cap:
            return False, CAP_MESSAGE.format(count=count, cap=cap), "queue_full"
        return await original(body, request, username)

    queue.push = push
