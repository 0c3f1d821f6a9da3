"""Bytes that may leave the workspace: metadata-free images.

The store should already hold clean copies, but an export is the last gate
before data leaves the owner's machine, so every image is checked again and
re-encoded from bare pixels if anything beyond harmless decoder hints is found.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..imageio import strip_jpeg

# Keys PIL puts in ``info`` that carry no personal data (decoder/format hints).
_HARMLESS = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression",
    "adobe", "adobe_transform", "gamma", "aspect", "srgb", "transparency", "interlace",
}
_EXT = {"JPEG": "jpg", "PNG": "png"}


# PNG chunks that carry pixels or rendering hints only; anything else (tEXt, eXIf, iCCP, tIME...) is re-encoded.
_PNG_OK = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"pHYs"}


def _bare_png(d: bytes) -> bool:
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    i, n = 8, len(d)
    while i + 8 <= n:
        length = int.from_bytes(d[i:i + 4], "big")
        kind = d[i + 4:i + 8]
        if kind not in _PNG_OK:
            return False
        if kind == b"IEND":
            return True
        i += 12 + length
    return False


def clean(data: bytes) -> tuple[bytes, str]:
    """(bytes, extension) with no EXIF/XMP/ICC/comments; untouched when already clean.

    A byte-level walk of the JPEG segments / PNG chunks settles the common case (the
    store's copies are already bare) ~10x faster than opening with PIL; anything it
    does not recognise as bare goes the slow, safe way: decode and re-encode.
    """
    if data[:2] == b"\xff\xd8" and strip_jpeg(data) == data:  # nothing for ingest's stripper to drop
        return data, "jpg"
    if _bare_png(data):
        return data, "png"
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        dirty = bool(set(im.info) - _HARMLESS) or len(im.getexif()) > 0
        if fmt in _EXT and not dirty:
            return data, _EXT[fmt]
        im.load()
        return encode(np.asarray(im.convert("RGB")), "PNG" if fmt == "PNG" else "JPEG")


def encode(rgb: np.ndarray, fmt: str = "JPEG") -> tuple[bytes, str]:
    """Encode bare pixels: a fresh Image has an empty ``info``, so nothing can leak through."""
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if fmt == "PNG":
        im.save(buf, "PNG", optimize=False)
    else:
        im.save(buf, "JPEG", quality=95)
    return buf.getvalue(), _EXT[fmt]


def payload(data: bytes, blur_boxes=()) -> tuple[bytes, str]:
    """The bytes to publish for one stored object: its faces in ``blur_boxes`` pixelated and the pixels
    re-encoded, else :func:`clean`. Damaged bytes raise what Pillow raises (OSError, ValueError, SyntaxError)."""
    if blur_boxes:
        from ..privacy.blur import pixelate_faces

        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"))
        return encode(pixelate_faces(rgb, blur_boxes))
    return clean(data)


def payloads(jobs: list[tuple[bytes, list]]) -> list[tuple[bytes | None, str]]:
    """One engine task of ``export --engine ray``: :func:`payload` of each (data, blur_boxes), in order;
    (None, the error's type name) for damaged bytes, so the driver raises the same one-line error as locally."""
    out: list[tuple[bytes | None, str]] = []
    for data, boxes in jobs:
        try:
            out.append(payload(data, boxes))
        except (OSError, ValueError, SyntaxError) as e:
            out.append((None, type(e).__name__))
    return out
