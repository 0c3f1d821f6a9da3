"""imageio.decode: every format and odd mode becomes upright RGB; every bad input is one Rejected reason."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from faceset.imageio import Rejected, decode, jpeg_sha, strip_jpeg


def enc(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def photo(w=96, h=64) -> Image.Image:
    """A smooth, non-symmetric test picture (so rotations are detectable)."""
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], axis=2).astype(np.uint8)
    a[:8, :8] = (255, 0, 0)  # red marker top-left
    return Image.fromarray(a, "RGB")


@pytest.fixture(scope="module")
def chip(data_dir) -> bytes:
    return next(iter(sorted((data_dir / "utkface" / "images").iterdir()))).read_bytes()


@pytest.mark.parametrize("fmt,kw,canon", [
    ("JPEG", {"quality": 95}, "jpeg"), ("PNG", {}, "png"), ("WEBP", {"lossless": True}, "webp"),
    ("BMP", {}, "bmp"), ("TIFF", {}, "tiff"), ("HEIF", {"quality": 95}, "heic"),
])
def test_formats_decode_to_rgb(fmt, kw, canon):
    src = photo()
    d = decode(enc(src, fmt, **kw))
    assert d.format == canon and d.rgb.shape == (64, 96, 3) and d.rgb.dtype == np.uint8
    err = np.abs(d.rgb.astype(int) - np.asarray(src).astype(int)).mean()
    assert err < (1 if canon in ("png", "bmp", "tiff", "webp") else 6)
    # the clean copy decodes back to (nearly) the same picture and has no metadata container
    back = np.asarray(Image.open(io.BytesIO(d.clean)).convert("RGB"))
    assert back.shape == d.rgb.shape and np.abs(back.astype(int) - d.rgb.astype(int)).mean() < 3
    assert d.clean_format == ("png" if canon in ("png", "bmp", "tiff") else "jpeg")


def test_gif_first_frame_only():
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    d = decode(b.getvalue())
    assert d.format == "gif" and tuple(d.rgb[10, 10]) == (255, 0, 0)


@pytest.mark.parametrize("orientation,expect_shape,marker", [
    (1, (64, 96), (0, 0)),      # as stored
    (3, (64, 96), (-1, -1)),    # 180 degrees: marker moves to bottom-right
    (6, (96, 64), (0, -1)),     # 90 CW: top-left goes to top-right
    (8, (96, 64), (-1, 0)),     # 90 CCW: top-left goes to bottom-left
])
def test_exif_orientation_applied(orientation, expect_shape, marker):
    exif = Image.Exif()
    exif[0x0112] = orientation
    d = decode(enc(photo(), "JPEG", quality=95, exif=exif.tobytes()))
    assert d.rgb.shape[:2] == expect_shape
    y, x = marker
    r, g, b = (int(v) for v in d.rgb[y, x])
    assert r > 200 and g < 60 and b < 60, (orientation, d.rgb[y, x])
    assert b"Exif" not in d.clean


def test_metadata_stripped_and_jpeg_pixels_unchanged():
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}  # GPS IFD
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>secret-person-name</x:xmpmeta>"
    raw = enc(photo(), "JPEG", quality=90, exif=exif.tobytes(), xmp=xmp, comment=b"shot at home")
    assert b"SpyCam" in raw and b"secret-person-name" in raw and b"shot at home" in raw
    d = decode(raw)
    for needle in (b"Exif", b"SpyCam", b"secret-person-name", b"shot at home", b"xmpmeta"):
        assert needle not in d.clean
    # lossless strip: the store copy decodes to exactly the original's pixels, and is the identity
    again = np.asarray(Image.open(io.BytesIO(d.clean)).convert("RGB"))
    assert np.array_equal(again, d.rgb) and d.pixel_sha == jpeg_sha(d.clean)
    # the same compressed picture with other (or no) metadata is the same image
    assert decode(enc(photo(), "JPEG", quality=90)).pixel_sha == d.pixel_sha
    with Image.open(io.BytesIO(d.clean)) as im:
        assert not im.getexif() and "xmp" not in im.info and "comment" not in im.info


def test_png_text_and_exif_chunks_dropped():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe private")
    ex = Image.Exif()
    ex[0x010F] = "SpyCam Inc"
    d = decode(enc(photo(), "PNG", pnginfo=info, exif=ex.tobytes()))
    assert b"Jane Doe" not in d.clean and b"SpyCam" not in d.clean and b"eXIf" not in d.clean


def test_cmyk_becomes_rgb():
    d = decode(enc(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95))  # pure red ink
    r, g, b = (int(v) for v in d.rgb[32, 32])
    assert d.rgb.shape == (64, 64, 3) and r > 200 and g < 50 and b < 50


def test_16bit_scaled_not_clipped():
    a = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    d = decode(enc(Image.fromarray(a), "PNG"))
    got = d.rgb[..., 0].astype(int)
    assert np.abs(got - np.rint(a / 257.0)).max() <= 1
    assert got.max() == 255 and len(np.unique(got)) > 200  # Pillow's naive convert would clip to 255


def test_alpha_and_palette_transparency_go_on_white():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    d = decode(enc(rgba, "PNG"))
    assert tuple(d.rgb[10, 10]) == (0, 0, 255) and tuple(d.rgb[10, 50]) == (255, 255, 255)
    pal = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    idx = pal.getpixel((50, 10))
    d2 = decode(enc(pal, "PNG", transparency=idx))
    assert tuple(d2.rgb[10, 50]) == (255, 255, 255)
    la = Image.new("LA", (64, 64), (0, 0))
    assert tuple(decode(enc(la, "PNG")).rgb[0, 0]) == (255, 255, 255)


def test_pixel_sha_same_pixels_any_lossless_container():
    src = photo()
    shas = {decode(enc(src, f)).pixel_sha for f in ("PNG", "BMP", "TIFF")}
    shas.add(decode(enc(src, "WEBP", lossless=True)).pixel_sha)
    assert len(shas) == 1
    assert decode(enc(src.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")).pixel_sha not in shas


def _png_with_size(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h (a decompression bomb shape) without allocating it."""
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _rejected(data: bytes, **kw) -> Rejected:
    with pytest.raises(Rejected) as e:
        decode(data, **kw)
    r = e.value
    assert r.reason and "\n" not in r.reason  # one line for people
    return r


def test_each_bad_input_has_its_own_reason(chip):
    jpg = enc(photo(), "JPEG", quality=90)
    png = enc(photo(), "PNG")
    assert _rejected(b"").code == "zero_byte"
    assert _rejected(chip[: len(chip) * 2 // 3]).code == "truncated"
    assert _rejected(png[: len(png) // 2]).code == "truncated"
    assert _rejected(jpg[:4] + bytes(random.Random(0).randbytes(3000)) + b"\xff\xd9").code == "corrupt"
    assert _rejected(b"\x89PNG\r\n\x1a\n" + bytes(200)).code == "corrupt"  # right magic, garbage after it
    assert _rejected(b"hello, this is a text file\n" * 20).code == "not_image"
    assert "PDF" in _rejected(b"%PDF-1.7\n" + b"x" * 500).reason
    assert _rejected(enc(photo(), "PPM")).code == "unsupported"
    assert _rejected(enc(photo(20, 20), "PNG")).code == "too_small"
    assert _rejected(enc(photo(40, 40), "PNG"), min_side=64).code == "too_small"
    assert decode(enc(photo(40, 40), "PNG"), min_side=16).rgb.shape == (40, 40, 3)
    assert _rejected(_png_with_size(100_000, 100_000)).code == "bomb"
    assert _rejected(png, max_pixels=1000).code == "bomb"
    assert _rejected(png, max_file_bytes=100).code == "too_large_file"


def test_strip_jpeg_refuses_non_jpeg():
    assert strip_jpeg(b"\x89PNG....") is None and strip_jpeg(b"\xff\xd8\xff") is None


# -- fuzz: mutated real bytes must only ever decode or be rejected ------------------------------
_SEEDS: dict[str, bytes] = {}


def _seeds(chip: bytes) -> list[bytes]:
    if not _SEEDS:
        _SEEDS["jpg"] = chip
        _SEEDS["png"] = enc(photo(48, 40), "PNG")
        _SEEDS["gif"] = enc(photo(48, 40).convert("P"), "GIF")
        _SEEDS["webp"] = enc(photo(48, 40), "WEBP")
    return list(_SEEDS.values())


@settings(max_examples=3000, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(which=st.integers(0, 3), edits=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.sampled_from(["set", "cut", "ins"])),
    min_size=1, max_size=6))
def test_fuzz_mutated_bytes_never_crash(chip, which, edits):
    b = bytearray(_seeds(chip)[which])
    for pos, val, op in edits:
        i = int(pos * len(b))
        if op == "set" and b:
            b[i] = val
        elif op == "cut":
            del b[i:]
        else:
            b[i:i] = bytes([val]) * 7
    try:
        d = decode(bytes(b))
    except Rejected as r:
        assert r.code in ("zero_byte", "truncated", "corrupt", "not_image", "unsupported", "too_small", "bomb",
                          "too_elongated")
    else:
        assert d.rgb.ndim == 3 and d.rgb.shape[2] == 3 and d.clean
    if which == 0:  # ingest's JPEG fast path must accept and reject exactly the same mutants
        assert _outcome(bytes(b), pixels=False) == _outcome(bytes(b), pixels=True)


def _outcome(data: bytes, **kw) -> tuple:
    try:
        d = decode(data, **kw)
    except Rejected as r:
        return ("rejected", r.code)
    return ("ok", d.pixel_sha, d.width, d.height, d.clean, d.format)


@pytest.mark.parametrize("kind", ["baseline", "progressive", "gray"])
def test_jpeg_validation_without_pixels_rejects_like_a_full_decode(kind):
    """decode(pixels=False) only entropy-decodes at 1/8 scale: cut and damaged files must still fail."""
    im = photo(1200, 900)
    a = np.asarray(im).astype(np.int16) + np.random.default_rng(1).integers(-8, 9, (900, 1200, 3))
    im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    good = enc(im.convert("L") if kind == "gray" else im, "JPEG", quality=90, progressive=kind == "progressive")
    d = decode(good, pixels=False)
    assert d.rgb is None and (d.width, d.height) == (1200, 900) and d.pixel_sha == jpeg_sha(d.clean)
    assert _outcome(good, pixels=False) == _outcome(good)
    rng = random.Random(kind)
    rejected = 0
    for i in range(40):
        b = bytearray(good)
        if i % 2:
            b = b[: rng.randrange(len(b) // 10, len(b) - 2)]
        else:
            for _ in range(rng.randint(1, 4)):
                j = rng.randrange(len(b) // 10, len(b))
                b[j] ^= 1 << rng.randrange(8)
        fast, full = _outcome(bytes(b), pixels=False), _outcome(bytes(b))
        assert fast == full, (i, fast[:2], full[:2])
        rejected += fast[0] == "rejected"
    assert rejected >= 20  # every cut one at least
