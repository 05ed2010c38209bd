"""Glance v2 image data: ``PUT /v2/images/{id}/file`` and ``GET /v2/images/{id}/file``.

Bodies are streamed, never buffered: an upload goes chunk by chunk through the fault effects
(``http.request_chunks``) into a ``BlobWriter`` that hashes and writes in a worker thread; a
download reads the content spec in a worker thread (``content.iter_async``) and writes through
``http.stream_response``. Following glance/api/v2/image_data.py: an upload needs a ``queued``
image (409 otherwise), moves it to ``saving`` and then ``active``; a broken upload puts it back
to ``queued`` (Glance's ``_restore``) and leaves no bytes behind; an image without data
downloads as 204.

The modern profile checks the bytes against ``disk_format`` as Glance 33 does with
``[image_format] require_image_format_match`` (glance/location.py ``set_data``): the verdict
comes after the bytes are in the store, so a refused upload (an HTML 415 page that does not
name the cause) leaves the image ``queued`` with the size and hashes it saved and its file in
the store; every later upload into it fails with a 500 (glance_store's Duplicate) until the
image is deleted. Liberty reads a ``Content-Range`` request header on a download as the range
to send (answering 200); modern Glance reads ``Range`` (answering 206).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from aiohttp import web

from migrator.disk_formats import HEAD_BYTES, detect_head, glance_accepts
from migrator.sim.cloud import SimCloud
from migrator.sim.content import BlobWriter, Digest, iter_async
from migrator.sim.glance_access import PREFIX, GlanceRules, can_modify, visible_image
from migrator.sim.http import SimHTTPError, auth_of, request_chunks, stream_response
from migrator.sim.images import set_content
from migrator.sim.state import Record, now_iso

RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# What webob renders for Glance's HTTPUnsupportedMediaType: the media type, not the cause.
UNSUPPORTED_MEDIA_PAGE = """<html>
 <head>
  <title>415 Unsupported Media Type</title>
 </head>
 <body>
  <h1>415 Unsupported Media Type</h1>
  The request media type application/octet-stream is not supported by this server.<br /><br />



 </body>
</html>"""
INTERNAL_ERROR = ("The server has either erred or is incapable of performing the requested "
                  "operation.")


class GlanceData:
    def __init__(self, cloud: SimCloud, rules: GlanceRules) -> None:
        self.cloud = cloud
        self.state = cloud.state
        self.rules = rules

    async def upload(self, request: web.Request) -> web.Response:
        ctx = auth_of(request)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type != "application/octet-stream":
            raise SimHTTPError(415, f"Content type {content_type or None} not supported")
        image_id = request.match_info["image_id"]
        image = visible_image(self.cloud, self.rules, ctx, image_id)
        if not can_modify(ctx, image):
            raise SimHTTPError(403, f"Not allowed to upload image data for image {image_id}")
        if self.rules.modern and "X-OpenStack-Image-Size" in request.headers:
            # Modern Glance reads the size hint (for quota); a bad value is a 400.
            try:
                int(request.headers["X-OpenStack-Image-Size"])
            except ValueError as exc:
                raise SimHTTPError(400, "Invalid or missing image size in request "
                                        "headers.") from exc
        status = image.get("status")
        if status != "queued":
            raise SimHTTPError(409, f"Image status transition from {status} to saving is not "
                                    "allowed")
        if image.get("_stored"):
            # The store still holds the file of a refused upload: glance_store's Duplicate,
            # a 500 from Glance's catch-all (the body is read first so the client hears it).
            async for _piece in request_chunks(request):
                pass
            raise SimHTTPError(500, INTERNAL_ERROR)
        self._set_status(image, "saving")
        path = self.cloud.blob_path(image_id)
        writer = BlobWriter(path)
        head = bytearray()
        try:
            async for piece in request_chunks(request):
                if len(head) < HEAD_BYTES:
                    head += piece[:HEAD_BYTES - len(head)]
                await writer.write(piece)
            digest = await writer.finish()
        except BaseException:
            # Dropped connection, client gone, handler cancelled: the image goes back to
            # queued (before yielding to the loop, so the next request sees it) and no
            # partial blob stays behind; the upload can be retried.
            if self.state.get("images", image_id) is image:
                self._set_status(image, "queued")
            writer.discard()
            raise
        if self.state.get("images", image_id) is not image:
            path.unlink(missing_ok=True)
            raise SimHTTPError(410, f"Image {image_id} could not be found after upload. The "
                                    "image may have been deleted during the upload, cleaning "
                                    "up the chunks uploaded.")
        if self.cloud.profile.delays.image_upload > 0:
            await asyncio.sleep(self.cloud.profile.delays.image_upload)
        if self.cloud.profile.glance_format_match and not glance_accepts(
                image.get("disk_format"), image.get("container_format"),
                detect_head(bytes(head)) or "raw"):
            self._refuse_stored(image, digest, path)
            return web.Response(status=415, text=UNSUPPORTED_MEDIA_PAGE,
                                content_type="text/html")
        set_content(self.cloud, image, {"kind": "file", "path": str(path)}, digest)
        return web.Response(status=204)

    def _refuse_stored(self, image: Record, digest: Digest, path: object) -> None:
        """Glance's ``_restore`` after its inspector refused the bytes: back to queued, with
        the size and hashes it had set while storing, and the stored file left in place."""
        image["size"] = digest.size
        image["checksum"] = digest.md5
        if self.cloud.profile.glance_multihash:
            image["os_hash_algo"] = "sha512"
            image["os_hash_value"] = digest.sha512
        image["_stored"] = str(path)
        self._set_status(image, "queued")

    def _set_status(self, image: Record, status: str) -> None:
        image["status"] = status
        image["updated_at"] = now_iso()
        self.state.touch("images", image)

    async def download(self, request: web.Request) -> web.StreamResponse:
        ctx = auth_of(request)
        image = visible_image(self.cloud, self.rules, ctx, request.match_info["image_id"])
        if image.get("status") == "deactivated" and not ctx.is_admin:
            raise SimHTTPError(403, "The requested image has been deactivated. Image data "
                                    "download is forbidden.")
        spec = image.get("_content")
        if not spec:
            # glance_store.NotFound on an image without locations becomes 204 No Content.
            return web.Response(status=204)
        size = int(image.get("size") or 0)
        start, length, status = 0, size, 200
        headers = {"Content-Type": "application/octet-stream"}
        if self.rules.modern and "Range" in request.headers:
            start, length = parse_range(request.headers["Range"], size)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
        elif not self.rules.modern and "Content-Range" in request.headers:
            # Liberty: webob's get_content_range, the bytes from offset for stop - offset
            # (status 200; Liberty also announced the whole size as Content-Length, which an
            # aiohttp response cannot do, so the range's length is sent here).
            start, length = parse_content_range(request.headers["Content-Range"], size)
        if image.get("checksum"):
            # Glance sends the whole image's md5 even for a range.
            headers["Content-MD5"] = str(image["checksum"])
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        chunks = iter_async(self.cloud.chunks(spec, start, start + length))
        return await stream_response(request, response, limited(chunks, length))


def parse_range(header: str, size: int) -> tuple[int, int]:
    """(offset, length) of a single ``bytes=`` range; 416 when it cannot be served."""
    match = RANGE_RE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise SimHTTPError(416, "Requested range not satisfiable",
                           headers={"Content-Range": f"bytes */{size}"})
    first, last = match.group(1), match.group(2)
    if not first:
        start = max(size - int(last), 0)
        end = size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise SimHTTPError(416, "Requested range not satisfiable",
                           headers={"Content-Range": f"bytes */{size}"})
    return start, end - start + 1


def parse_content_range(header: str, size: int) -> tuple[int, int]:
    """(offset, length) of a ``Content-Range: bytes first-last/total`` request header as
    Liberty's webob reads it; an unparsable one is ignored (the whole image)."""
    match = CONTENT_RANGE_RE.match(header.strip())
    if match is None:
        return 0, size
    first, last = int(match.group(1)), int(match.group(2))
    if last < first or first >= size:
        return 0, size
    return first, min(last, size - 1) - first + 1


async def limited(chunks: AsyncIterator[bytes], length: int) -> AsyncIterator[bytes]:
    remaining = length
    async for piece in chunks:
        if remaining <= 0:
            break
        if len(piece) > remaining:
            piece = piece[:remaining]
        remaining -= len(piece)
        yield piece


def add_routes(router: web.UrlDispatcher, cloud: SimCloud, rules: GlanceRules) -> None:
    api = GlanceData(cloud, rules)
    router.add_put(f"{PREFIX}/v2/images/{{image_id}}/file", api.upload)
    router.add_get(f"{PREFIX}/v2/images/{{image_id}}/file", api.download, allow_head=False)
