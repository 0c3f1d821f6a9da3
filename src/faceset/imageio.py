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

import errno
import hashlib
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps

try:  # HEIC/HEIF from phones
    import pillow_heif

    pillow_heif.register_heif_opener()
except Exception:  # pragma: no cover - pillow-heif is a declared dependency
    pillow_heif = None

# We check pixel counts ourselves (configurable); Pillow's own guard stays as a backstop (its warnings are
# never printed raw: every decode here runs with warnings silenced and reports a Rejected instead).
ImageFile.LOAD_TRUNCATED_IMAGES = False
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
# The one pixel and memory budget (ingest, scan, detect, forget selfies: see ``check_dims``). Detection's working
# copies (padded rescue copies, rotations, tiles) grow with the square of the LONG side, not with w*h, so a
# 100000x32 strip that passes a pixel limit would still cost GBs: the aspect ratio is capped, and scan/detect work
# on a copy whose long side is at most WORK_MAX_SIDE (JPEGs are draft-decoded to 1600..3199 px anyway).
MAX_ASPECT = 20          # long side / short side
WORK_MAX_SIDE = 3200     # long side of the copy scan and detect analyse (boxes are scaled back)

# Pillow format name -> our canonical name. Anything Pillow opens that is not here is "unsupported".
SUPPORTED = {
    "JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
    "TIFF": "tiff", "HEIF": "heic", "AVIF": "avif",
}
LOSSY = {"jpeg", "webp", "heic", "avif"}

REASON_CODES = (
    "zero_byte", "truncated", "corrupt", "not_image", "unsupported", "too_small", "bomb",
    "unsafe_path", "too_large_file", "missing", "unreadable", "too_elongated",
)


class Rejected(Exception):
    """A file we will not ingest: ``code`` is stable (counted), ``reason`` is one line for people."""

    def __init__(self, code: str, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def check_dims(w: int, h: int, *, min_side: int = DEFAULT_MIN_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """The one budget every decode path applies to the header's size, before a pixel is decoded."""
    if w * h > max_pixels:
        raise Rejected("bomb", f"{w}x{h} = {w * h:,} pixels, over the --max-pixels {max_pixels:,} limit")
    if min(w, h) < min_side:
        raise Rejected("too_small", f"{w}x{h} is smaller than {min_side} px on a side")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise Rejected("too_elongated", f"{w}x{h} is more elongated than {MAX_ASPECT}:1 (no face fits it, and face "
                                        "detection's working copies grow with the long side)")


def work_scale(w: int, h: int) -> float:
    """Scale of the copy scan/detect analyse: the long side at most WORK_MAX_SIDE (bounded working memory)."""
    return min(1.0, WORK_MAX_SIDE / max(w, h, 1))


def work_copy(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` downscaled to ``work_scale`` (the copy detection works on), or itself when already small enough."""
    h, w = rgb.shape[:2]
    s = work_scale(w, h)
    if s >= 1.0:
        return rgb
    im = Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX)
    return np.asarray(im)


def read_file(path: str | os.PathLike, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The guarded reader for image files given by a user (ingest, detect, forget selfies). Raises only Rejected.

    Regular files only (links are followed, but a link to a device, FIFO or socket is refused): opened
    non-blocking so a FIFO can never hang us, checked with fstat on the opened descriptor (no swap between
    check and read), and read with a cap so a file that grows (or lies about its size) cannot exhaust memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise Rejected("missing", "file not found (or a broken link)") from None
    except OSError as e:
        raise Rejected("unreadable", f"cannot open ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Rejected("unsupported", "not a regular file (device, pipe or socket)")
        if st.st_size > max_file_bytes:
            raise Rejected("too_large_file", f"file is {st.st_size:,} bytes, over the {max_file_bytes:,} limit")
        chunks, n = [], 0
        while n <= max_file_bytes:
            try:
                b = os.read(fd, min(1 << 20, max_file_bytes + 1 - n))
            except BlockingIOError:
                b = b""
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise Rejected("unreadable", f"cannot read ({e.strerror or e})") from None
            if not b:
                break
            chunks.append(b)
            n += len(b)
        if n > max_file_bytes:
            raise Rejected("too_large_file", f"file grew over the {max_file_bytes:,} limit while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _jpeg_too_short(data: bytes, w: int, h: int) -> bool:
    """A JPEG whose header claims more pixels than its data can hold (9000x9000 with 200x200 of data).

    libjpeg fills the missing rows with grey and only warns, so Pillow accepts it. Every Huffman-coded MCU
    (at most 16x16 px) costs at least one bit, so fewer bytes than that is a cut-short or padded file.
    Arithmetic-coded JPEGs (SOF9-11, 13-15) can be smaller and are not judged.
    """
    sos = data.find(b"\xff\xda")
    head = data[:sos if sos > 0 else 65536]
    if any(bytes([0xFF, m]) in head for m in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)):
        return False
    return len(data) * 8 < -(-w // 16) * -(-h // 16)


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
    if data[:65536].count(0) == len(data[:65536]):
        return "not an image (zero bytes)"
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
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's backstop is never stricter than --max-pixels (ours decides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise Rejected("bomb", _bomb_reason(e, max_pixels)) from None
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
            check_dims(w, h, min_side=min_side, max_pixels=max_pixels)
            if fmt == "jpeg" and _jpeg_too_short(data, w, h):
                raise Rejected("truncated", f"JPEG header claims {w}x{h} but the file holds far less image data")
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
                raise Rejected("bomb", _bomb_reason(e, max_pixels)) from None
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


_OBJ_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _short(e: BaseException) -> str:
    s = str(e).splitlines()[0] if str(e) else type(e).__name__
    s = _OBJ_REPR.sub("", s).strip() or type(e).__name__  # never "<_io.BytesIO object at 0x...>" in a reason
    return s[:120]


def _bomb_reason(e: BaseException, max_pixels: int) -> str:
    """Pillow's own guard fired (its limit, not ours): say it in terms of --max-pixels."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    claimed = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
    return f"header claims {claimed}, over the --max-pixels {max_pixels:,} limit"
