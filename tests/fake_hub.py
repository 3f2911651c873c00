"""A Hub behind huggingface_hub's real HTTP client, for tests that must not reach the network.

:func:`install` puts an ``httpx2.MockTransport`` under huggingface_hub's client
(``huggingface_hub.set_client_factory``), so ``hf_hub_download`` and everything built on it
(transformers, datasets) sends real requests, reads real responses and raises the errors the real
Hub makes it raise. The answers: every request refused with an error code (``RepoNotFound``,
``GatedRepo``), every request failing as on a machine without network, or a folder's files served
(and any repository's info), one of them cut off midway by a dropped connection.
Offline mode is kept (the request is refused before it reaches the fake); callers turn it off
(``HF_HUB_OFFLINE=0``, or ``huggingface_hub.constants.HF_HUB_OFFLINE``) for the fake to answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
from huggingface_hub import constants, set_client_factory
from huggingface_hub.errors import OfflineModeIsEnabled

COMMIT = "c0ffee" + "0" * 34
# /<repo_id>/resolve/<revision>/<file>, or /datasets/<repo_id>/resolve/<revision>/<file>
RESOLVE = re.compile(r"^/(?:datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/[^/]+/(?P<file>.+)$")
# /api/models/<repo_id> or /api/datasets/<repo_id>: what HfApi.repo_info asks
REPO_INFO = re.compile(r"^/api/(?:models|datasets)/(?P<repo>[^/]+/[^/]+)$")
# The Hub's own messages for these codes (hf_raise_for_status words the error from them).
REFUSALS = {
    "RepoNotFound": "Repository not found",
    "GatedRepo": "Access to this repository is restricted. You must have access to it and be authenticated.",
}


class DroppedConnection(httpx2.SyncByteStream):
    """A body that sends its first ``sent`` bytes, then fails as a reset connection does."""

    def __init__(self, content: bytes, sent: int):
        self.content, self.sent = content, sent

    def __iter__(self) -> Iterator[bytes]:
        yield self.content[: self.sent]
        raise httpx2.ReadError("[Errno 104] Connection reset by peer")


def refusing(code: str, requests: list | None = None):
    """Answer every request with 401 and ``code`` (a key of :data:`REFUSALS`), as the Hub answers an anonymous client.

    ``requests``, when given, records each request's path.
    """

    def handler(request: httpx2.Request) -> httpx2.Response:
        if requests is not None:
            requests.append(request.url.path)
        return httpx2.Response(401, headers={"X-Error-Code": code, "X-Error-Message": REFUSALS[code]}, request=request)

    return handler


def serving(folder: Path, cut_off: str | None = None, requests: list | None = None):
    """Serve ``folder``'s files for any repository; the first download of ``cut_off`` breaks after half its bytes.

    ``requests``, when given, records each request as ``(method, path)``.
    """
    broken = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if requests is not None:
            requests.append((request.method, request.url.path))
        info = REPO_INFO.match(request.url.path)
        if info:
            return httpx2.Response(200, json={"id": info["repo"]}, request=request)
        match = RESOLVE.match(request.url.path)
        path = folder / match["file"] if match else None
        if path is None or not path.is_file():
            headers = {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}
            return httpx2.Response(404, headers=headers, request=request)
        content = path.read_bytes()
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(content).hexdigest()}"'}
        if request.method == "HEAD":
            return httpx2.Response(200, headers={**headers, "Content-Length": str(len(content))}, request=request)
        if path.name == cut_off and not broken:
            broken.append(path.name)
            stream = DroppedConnection(content, len(content) // 2)
            return httpx2.Response(200, headers=headers, stream=stream, request=request)
        return httpx2.Response(200, headers=headers, content=content, request=request)

    return handler


def unreachable(requests: list | None = None):
    """Fail every request as a machine without network does (the name does not resolve); ``requests`` records each."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if requests is not None:
            requests.append((request.method, request.url.path))
        raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)

    return handler


def _refuse_when_offline(request: httpx2.Request) -> None:
    if constants.is_offline_mode():  # as huggingface_hub's own client does
        raise OfflineModeIsEnabled(f"Cannot reach {request.url}: offline mode is enabled.")


def install(handler) -> None:
    """Route huggingface_hub's HTTP client to ``handler`` (``refusing(...)`` or ``serving(...)``)."""
    set_client_factory(
        lambda: httpx2.Client(
            transport=httpx2.MockTransport(handler),
            event_hooks={"request": [_refuse_when_offline]},
            follow_redirects=True,
        )
    )
