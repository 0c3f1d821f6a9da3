"""Thumbnails: made once from the store's clean copy, cached under ``<workspace>/cache/thumbs``.

Named by the clean copy's store key (a redacted copy gets a new key, so a stale thumbnail is never
served for it). They are derived artefacts: erasure's ``wipe_derived`` shreds the whole cache folder.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

SIZE = 320


def content_type(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class Thumbs:
    def __init__(self, ws, size: int = SIZE):
        self.ws = ws
        self.size = size

    @property
    def root(self) -> Path:
        return self.ws.cache_dir / "thumbs"

    def path(self, store_key: str) -> Path:
        return self.root / store_key[:2] / f"{store_key}-{self.size}.jpg"

    def get(self, store_key: str) -> bytes:
        """The thumbnail of one stored image (made and cached on first use)."""
        p = self.path(store_key)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            pass
        from PIL import Image

        with Image.open(io.BytesIO(self.ws.store.get(store_key))) as im:
            im = im.convert("RGB")
            im.thumbnail((self.size, self.size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=82)
        data = buf.getvalue()
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, p)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return data

    def face_crop(self, store_key: str, box: tuple[float, float, float, float]) -> bytes:
        """A face cut from its photo (for faces without a chip), not cached."""
        from PIL import Image

        x, y, w, h = box
        with Image.open(io.BytesIO(self.ws.store.get(store_key))) as im:
            im = im.convert("RGB").crop((int(x), int(y), int(x + w), int(y + h)))
            im.thumbnail((150, 150))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
        return buf.getvalue()
