"""Uploads: a request-size limit enforced while reading, and images stored under generated names.

Memory stays bounded however many uploads are in flight: the request body is
counted as it arrives and cut off at the limit (:class:`BodyLimit`); the
multipart parser (Starlette's) keeps at most 1 MB of each file in memory and
spools the rest to a temporary file; :func:`store_image` copies that to the
job's folder in 1 MB chunks and decodes at most :data:`MAX_DECODES` images at
once (a decoded image may take ``max_pixels * 12`` bytes as float32).

No name a client sends reaches the file system: an upload is written as
``<job dir>/inputs/<role><ext>``, where ``role`` is ``content`` or
``style-<n>`` and ``ext`` comes from the format Pillow detects in the bytes.
The client's file name is kept only as a label (:func:`display_name`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import unicodedata
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image
from starlette.exceptions import HTTPException

from ..errors import NstjaxError
from ..io.atomic import atomic_path
from ..io.images import fit_longest_side, load_image, probe_image_shape, resize_image, save_image

__all__ = ["BodyLimit", "StoredImage", "UploadError", "checked_shape", "display_name", "store_image"]

THUMB_SIZE = 256
"""Longest side of the thumbnails kept beside each input, in pixels."""

MAX_DECODES = 2
"""Uploads decoded at the same time (to check them and make their thumbnails); the others wait their turn."""

_DECODING = threading.BoundedSemaphore(MAX_DECODES)

_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}


class UploadError(Exception):
    """An upload the server refuses: ``status`` (413, 415) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with 413, without reading it all.

    A declared ``Content-Length`` over the limit is answered at once, unread; a
    body without one (chunked) is counted as it arrives and cut off at the
    limit. ``describe`` words the limit for the message.
    """

    def __init__(self, app: Any, limit: int, describe: str):
        self.app = app
        self.limit = limit
        self.message = f"the upload is larger than this server accepts ({describe})"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return

        received = 0
        started = False

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge(413, self.message)
            return message

        async def watching_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except Exception as e:  # the app may wrap our signal (form parsing turns errors into its own)
            if started or not _caused_by_limit(e):
                raise
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": self.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so the framework's body parsing passes it on as a 413."""


def _caused_by_limit(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, _TooLarge):
            return True
        if isinstance(error, BaseExceptionGroup):
            return any(_caused_by_limit(e) for e in error.exceptions)
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def display_name(filename: str | None, fallback: str) -> str:
    """A client's file name as a label only: its last path part, printable, at most 120 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:120] or fallback


class StoredImage:
    """An accepted upload: its stored file, its thumbnail, its label and its size in pixels (h, w)."""

    def __init__(self, path: Path, thumb: Path, label: str, shape: tuple[int, int]):
        self.path, self.thumb, self.label, self.shape = path, thumb, label, shape


def checked_shape(path: Path, label: str, max_pixels: int) -> tuple[int, int]:
    """(height, width) of the uploaded image at ``path``, read from its header only.

    Raises:
      UploadError: 415 when Pillow cannot read it as an image, 413 over ``max_pixels`` pixels (a
        decompression bomb is refused before it is decoded). Messages start with ``label``.
    """
    try:
        h, w = probe_image_shape(path)
    except NstjaxError as e:
        raise UploadError(415, f"{label}: {e.problem}") from None
    if h * w > max_pixels:
        raise UploadError(413, f"{label}: {w}x{h} pixels is more than this server accepts ({max_pixels} pixels)")
    return h, w


def store_image(source: IO[bytes], directory: Path, role: str, label: str, max_pixels: int) -> StoredImage:
    """Copy an uploaded file into ``directory`` as ``<role><ext>`` and check that it is a readable image.

    ``role`` is the server's own name (``content``, ``style-1``, ...). A thumbnail
    ``<role>.thumb.png`` (longest side :data:`THUMB_SIZE`) is written beside it.

    Raises:
      UploadError: 415 when the bytes are not an image Pillow can decode (the
        reason is in the message, prefixed by ``label``), 413 when the image
        has more than ``max_pixels`` pixels.
    """
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{role}.upload"
    with atomic_path(raw) as tmp, open(tmp, "wb") as out:
        shutil.copyfileobj(source, out, length=1 << 20)
    try:
        checked_shape(raw, label, max_pixels)
        with _DECODING:
            try:
                image = load_image(raw, max_pixels=max_pixels)
            except NstjaxError as e:
                raise UploadError(415, f"{label}: {e.problem}") from None
            shape = (int(image.shape[0]), int(image.shape[1]))
            small = resize_image(image, fit_longest_side(shape, min(THUMB_SIZE, max(shape))))
            del image
        with Image.open(raw) as im:
            suffix = _SUFFIXES.get(im.format or "", ".img")
    except BaseException:
        raw.unlink(missing_ok=True)
        raise
    path = directory / f"{role}{suffix}"
    os.replace(raw, path)
    thumb = directory / f"{role}.thumb.png"
    save_image(thumb, np.clip(small, 0.0, 1.0))
    return StoredImage(path, thumb, label, shape)
