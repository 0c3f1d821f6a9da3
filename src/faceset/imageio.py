"""Decode untrusted image bytes into clean RGB, or reject them with one reason.

Every failure mode a real photo folder has (empty files, half-copied files,
renamed PDFs, 16-bit scans, CMYK prints, pixel bombs) maps to a ``Rejected``
with a stable ``code`` and a one-line ``reason`` so a batch can go on and the
summary can count it. Nothing here raises anything else for bad input.

The clean copy written to the store never carries metadata: JPEGs that need
no rotation keep their compressed data and only lose their APPn/COM segments
(lossless, and decodes to exactly the same pixels); everything else is
re-encoded from the normalised RGB array (JPEG q95 for lossy sources, PNG for
lossless ones).

Image identity (``pixel_sha``): for those stripped JPEGs it is the sha256 of the
stripped bytes (same compressed image data = same picture, whatever the
metadata), so ingest never needs their full-size pixels: ``decode(...,
pixels=False)`` proves the file whole by entropy-decoding it at 1/8 scale
(every coefficient is still read, so truncation and corruption raise exactly as
in a full decode) at ~1/3 of the cost. Every other image is hashed over its
decoded RGB pixels, so lossless re-encodes (PNG/BMP/TIFF/WebP) collapse.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

try:  # HEIC/HEIF from phones
    import pillow_heif

    pillow_heif.register_heif_opener()
except Exception:  # pragma: no cover - pillow-heif is a declared dependency
    pillow_heif = None

# We check pixel counts ourselves (configurable); Pillow's own guard stays as a backstop.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024

# Pillow format name -> our canonical name. Anything Pillow opens that is not here is "unsupported".
SUPPORTED = {
    "JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
    "TIFF": "tiff", "HEIF": "heic", "AVIF": "avif",
}
LOSSY = {"jpeg", "webp", "heic", "avif"}

REASON_CODES = (
    "zero_byte", "truncated", "corrupt", "not_image", "unsupported", "too_small", "bomb",
    "unsafe_path", "too_large_file", "missing", "unreadable",
)


class Rejected(Exception):
    """A file we will not ingest: ``code`` is stable (counted), ``reason`` is one line for people."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass
class Decoded:
    rgb: np.ndarray | None  # HxWx3 uint8, upright; None only for decode(pixels=False) of a stripped JPEG
    format: str  # canonical source format (jpeg, png, ...)
    pixel_sha: str
    clean: bytes  # metadata-free encoding for the store
    clean_format: str  # jpeg | png
    width: int
    height: int


def pixel_sha(rgb: np.ndarray) -> str:
    """sha256 over shape + RGB bytes: the same picture re-encoded losslessly collapses here."""
    h = hashlib.sha256(f"{rgb.shape[0]}x{rgb.shape[1]}x3:".encode())
    h.update(np.ascontiguousarray(rgb, dtype=np.uint8).data)
    return h.hexdigest()


def jpeg_sha(stripped: bytes) -> str:
    """Identity of a metadata-stripped JPEG: its bytes (tagged so it never equals a pixel hash)."""
    h = hashlib.sha256(b"jpeg-stripped:")
    h.update(stripped)
    return h.hexdigest()


def sniff(data: bytes) -> str | None:
    """Format from magic bytes, independent of Pillow (tells 'corrupt X' from 'not an image')."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"):
            return "heic"
    return None


def _describe_non_image(data: bytes) -> str:
    head = data[:16]
    if head.startswith(b"%PDF"):
        return "not an image (a PDF document)"
    if head.startswith(b"PK\x03\x04"):
        return "not an image (a zip archive; pass archives as their own SRC)"
    if data[257:262] == b"ustar" or head.startswith(b"\x1f\x8b"):
        return "not an image (a tar/gzip archive; pass archives as their own SRC)"
    try:
        data[:4096].decode("utf-8")
        return "not an image (text)"
    except UnicodeDecodeError:
        return "not an image (unrecognised bytes)"


def _looks_truncated(fmt: str | None, data: bytes) -> bool:
    """A well-formed start but no end marker: cut short. A broken start is 'corrupt' instead."""
    tail = data.rstrip(b"\x00")[-64:]
    if fmt == "jpeg":
        return data[3:4] in _JPEG_FIRST_MARKERS and not tail.endswith(b"\xff\xd9")
    if fmt == "png":
        return data[12:16] == b"IHDR" and b"IEND" not in tail
    if fmt == "gif":
        return not tail.endswith(b";")
    return False


_JPEG_FIRST_MARKERS = {bytes([m]) for m in (*range(0xE0, 0xF0), 0xDB, 0xC4, 0xC0, 0xC2, 0xDD, 0xFE)}


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8: alpha over white, 16/32-bit scaled (not clipped), CMYK converted."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im)
        if mode == "F" or a.dtype.kind == "f":
            a = np.nan_to_num(a.astype(np.float32))
            a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        elif mode == "I" and a.max(initial=0) > 65535:
            a = a.astype(np.float64) * (255.0 / float(a.max()))
        else:  # 16-bit data: 65535 -> 255
            a = a.astype(np.float32) / 257.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in im.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        bg.alpha_composite(im)
        return np.asarray(bg.convert("RGB"))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


def strip_jpeg(data: bytes) -> bytes | None:
    """Drop every APPn (except a minimal JFIF and Adobe colour-transform APP14) and COM segment.

    Lossless: the entropy-coded data is untouched, so the pixels are identical. Returns None when
    the marker structure is not what we expect (caller then re-encodes).
    """
    if data[:2] != b"\xff\xd8":
        return None
    out = bytearray(b"\xff\xd8")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m == 0xD8 or 0xD0 <= m <= 0xD7 or m == 0x01:
            return None
        seglen = int.from_bytes(data[i + 2:i + 4], "big")
        if seglen < 2 or i + 2 + seglen > n:
            return None
        seg = data[i:i + 2 + seglen]
        if m == 0xDA:  # start of scan: copy the rest up to EOI, drop any trailer (MPF images, vendor junk)
            end = data.find(b"\xff\xd9", i + 2 + seglen)
            body = memoryview(data)[i:] if end < 0 else memoryview(data)[i:end + 2]
            return b"".join((out, body, b"" if end >= 0 else b"\xff\xd9"))  # one copy of a large scan
        if m == 0xE0:
            if seg[4:9] == b"JFIF\x00" and seglen >= 16:
                payload = seg[4:16] + b"\x00\x00"  # identifier, version, units, density; no thumbnail
                out += b"\xff\xe0" + (len(payload) + 2).to_bytes(2, "big") + payload
        elif m == 0xEE:
            if seg[4:9] == b"Adobe":
                out += seg
        elif 0xE1 <= m <= 0xEF or m == 0xFE:
            pass  # EXIF, XMP, ICC, IPTC, maker notes, comments: gone
        else:
            out += seg
        i += 2 + seglen
    return None


def encode_clean(rgb: np.ndarray, lossy: bool) -> tuple[bytes, str]:
    """Re-encode without any metadata: JPEG q95 for lossy sources (no extra loss worth a PNG), else PNG."""
    buf = io.BytesIO()
    im = Image.fromarray(rgb, "RGB")
    if lossy:
        im.save(buf, "JPEG", quality=95, optimize=False)
        return buf.getvalue(), "jpeg"
    im.save(buf, "PNG", compress_level=3)
    return buf.getvalue(), "png"


def encode_png(a: np.ndarray) -> bytes:
    """A face chip as PNG: a fresh image, so no metadata is written."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def encode_jpeg(a: np.ndarray, q: int = 95) -> bytes:
    """A face crop as JPEG (quality ``q``), metadata-free."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return buf.getvalue()


def decode(
    data: bytes,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    clean: bool = True,
    pixels: bool = True,
) -> Decoded:
    """Decode bytes to an upright RGB array (+ clean store bytes). Raises only ``Rejected``.

    ``pixels=False`` (ingest): a JPEG that needs no rotation is only validated (entropy-decoded at
    1/8 scale) and ``rgb`` is None; the rejections and ``pixel_sha`` are the same as with pixels.
    """
    if len(data) == 0:
        raise Rejected("zero_byte", "empty file (0 bytes)")
    if len(data) > max_file_bytes:
        raise Rejected("too_large_file", f"file is {len(data):,} bytes, over the {max_file_bytes:,} limit")
    magic = sniff(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise Rejected("bomb", f"decompression bomb: {e}".splitlines()[0]) from None
        except Exception as e:
            if magic is None:
                raise Rejected("not_image", _describe_non_image(data)) from None
            if _looks_truncated(magic, data):
                raise Rejected("truncated", f"{magic.upper()} file is cut short") from None
            raise Rejected("corrupt", f"{magic.upper()} header unreadable ({_short(e)})") from None
        try:
            fmt = SUPPORTED.get(im.format or "")
            if fmt is None:
                raise Rejected("unsupported", f"{im.format or 'this'} images are not supported")
            w, h = im.size
            if w * h > max_pixels:
                raise Rejected("bomb", f"{w}x{h} = {w * h:,} pixels, over the {max_pixels:,} limit")
            if min(w, h) < min_side:
                raise Rejected("too_small", f"{w}x{h} is smaller than {min_side} px on a side")
            if getattr(im, "is_animated", False):
                im.seek(0)  # first frame only
            stripped = None  # JPEG's EXIF is parsed at open: decide before decoding any pixel
            if fmt == "jpeg" and _orientation(im) in (None, 1) and im.mode in ("RGB", "L"):
                stripped = strip_jpeg(data)  # None: odd marker layout, take the re-encode path
            if stripped is not None and not pixels:
                im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))  # DCT scaling: all entropy data, tiny IDCT
            try:
                im.load()
            except Image.DecompressionBombError as e:
                raise Rejected("bomb", f"decompression bomb: {e}".splitlines()[0]) from None
            except Exception as e:
                if _looks_truncated(magic or fmt, data) or "truncated" in str(e).lower() or isinstance(e, EOFError):
                    raise Rejected("truncated", f"{fmt.upper()} file is cut short ({_short(e)})") from None
                raise Rejected("corrupt", f"{fmt.upper()} data is damaged ({_short(e)})") from None
            if stripped is not None:
                rgb = _checked_rgb(im) if pixels else None
                return Decoded(rgb, fmt, jpeg_sha(stripped), stripped if clean else b"", "jpeg" if clean else "",
                               w, h)
            orientation = _orientation(im)  # after load: PNG may carry eXIf behind its pixel data
            try:
                up = ImageOps.exif_transpose(im) if orientation not in (None, 1) else im
            except Exception:
                up = im  # broken EXIF: keep the pixels as stored
            rgb = _checked_rgb(up)
            ph, pw = rgb.shape[:2]
            if not clean:
                return Decoded(rgb, fmt, pixel_sha(rgb), b"", "", pw, ph)
            blob, cfmt = encode_clean(rgb, fmt in LOSSY)
            return Decoded(rgb, fmt, pixel_sha(rgb), blob, cfmt, pw, ph)
        except Rejected:
            raise
        except Exception as e:  # anything else Pillow throws on hostile input
            raise Rejected("corrupt", f"undecodable ({_short(e)})") from None
        finally:
            im.close()


def _checked_rgb(im: Image.Image) -> np.ndarray:
    try:
        rgb = _to_rgb(im)
    except Exception as e:
        raise Rejected("corrupt", f"cannot convert {im.mode} pixels ({_short(e)})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise Rejected("corrupt", f"unexpected pixel layout {rgb.shape}")
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _orientation(im: Image.Image) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except Exception:
        return None


def _short(e: BaseException) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    return s[:120]
