"""No EXIF, GPS, XMP or maker notes survive into the store or an export; no original file name leaks.

Inputs are real photos re-saved with a full set of metadata (EXIF with maker note and a
camera serial, GPS IFD, XMP packet, JPEG comment / PNG text) under file names that must
never appear anywhere in an export.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

SECRET_NAMES = ["HOME-of-Alice-Q-Public-4711.jpg", "kids_at_beach_GPS_8812.png", "passport-scan-9931.webp"]
MARKERS = [b"SerialNo-77X", b"AliceCam", b"GPSSecretNote", b"xmp-secret-creator", b"comment-secret"]
XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="xmp-secret-creator"/></rdf:RDF>'
       b'</x:xmpmeta><?xpacket end="w"?>')


def _exif() -> Image.Exif:
    ex = Image.Exif()
    ex[0x010F] = "AliceCam"  # Make
    ex[0x0110] = "Model-1"
    ex[0x0132] = "2024:05:01 10:00:00"
    ex[0xA431] = "SerialNo-77X"  # BodySerialNumber lives in the Exif IFD; also in IFD0 for readers that look there
    ifd = ex.get_ifd(0x8769)
    ifd[0x927C] = b"MakerNoteBytes-SerialNo-77X"  # MakerNote
    ifd[0xA431] = "SerialNo-77X"
    gps = ex.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 12.5)
    gps[3], gps[4] = "E", (13.0, 24.0, 17.8)
    gps[0x1B] = b"ASCII\x00\x00\x00GPSSecretNote"  # GPSProcessingMethod
    return ex


@pytest.fixture(scope="module")
def laden(tmp_path_factory, data_dir) -> Path:
    """Three real photos with metadata in JPEG, PNG and WebP, under revealing names."""
    d = tmp_path_factory.mktemp("laden") / "Alice private photos"
    d.mkdir()
    srcs = [data_dir / "identities" / "barack_obama" / "obama.jpg",
            data_dir / "identities" / "joe_biden" / "biden.jpg",
            sorted((data_dir / "identities" / "jennifer_aniston").glob("*.jpg"))[0]]
    for src, name in zip(srcs, SECRET_NAMES):
        im = Image.open(src).convert("RGB")
        out = d / name
        if name.endswith(".jpg"):
            im.save(out, "JPEG", quality=92, exif=_exif(), xmp=XMP, comment=b"comment-secret")
        elif name.endswith(".png"):
            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", "comment-secret")
            info.add_itxt("XML:com.adobe.xmp", XMP.decode())
            im.save(out, "PNG", exif=_exif(), pnginfo=info)
        else:
            im.save(out, "WEBP", quality=90, exif=_exif(), xmp=XMP)
    # The inputs really carry what we test for.
    for p in d.iterdir():
        raw = p.read_bytes()
        assert all(m in raw for m in MARKERS[:2]) and b"xmp-secret-creator" in raw
        with Image.open(p) as im:
            assert im.getexif().get_ifd(0x8825), p.name
    return d


def _assert_clean_image(raw: bytes, where: str) -> None:
    for m in MARKERS:
        assert m not in raw, f"{where}: {m!r} survived"
    for tag in (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", b"<x:xmpmeta", b"eXIf", b"iTXt", b"tEXt"):
        assert tag not in raw, f"{where}: {tag!r} present"
    with Image.open(io.BytesIO(raw)) as im:
        ex = im.getexif()
        assert len(ex) == 0 or set(ex) <= {0x0112}, f"{where}: EXIF tags {dict(ex)}"
        assert not ex.get_ifd(0x8825), f"{where}: GPS IFD"
        assert not ex.get_ifd(0x8769), f"{where}: Exif IFD (maker notes)"
        assert not {"exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment"} & set(im.info), f"{where}: {set(im.info)}"


def _names(name: str) -> list[bytes]:
    stem = Path(name).stem
    return [name.encode(), stem.encode(), stem.encode("utf-16-le")]


def test_store_and_exports_carry_no_metadata_or_names(ws, laden, tmp_path):
    """Default source names too: ingest names a source after its folder or file unless told otherwise."""
    from faceset.curate import assign_splits, cluster_people
    from faceset.export import export
    from faceset.ingest import ingest
    from faceset.scan import scan

    rep = ingest(ws, [laden], license="CC-BY-4.0", consent="consent", progress=False, workers=1)
    assert rep.added == len(SECRET_NAMES)
    # A single file ingested on its own: its default source name is the file's name.
    single = tmp_path / "Bob-at-home-5521.jpg"
    Image.open(laden / SECRET_NAMES[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        single, "JPEG", quality=90, exif=_exif(), xmp=XMP)
    assert ingest(ws, [single], license="CC-BY-4.0", consent="consent", progress=False, workers=1).added == 1
    names = [*SECRET_NAMES, single.name]
    keys = [r["store_key"] for r in ws.catalog.q("SELECT store_key FROM images")]
    for k in keys:
        _assert_clean_image(ws.store.get(k), f"stored {k[:8]}")

    scan(ws, progress=False)
    faces = ws.catalog.q("SELECT chip_key, crop_key FROM faces")
    assert faces, "the test photos should have faces"
    for r in faces:
        for k in (r["chip_key"], r["crop_key"]):
            _assert_clean_image(ws.store.get(k), f"face object {k[:8]}")

    cluster_people(ws)
    assign_splits(ws)
    outs = []
    for fmt, what in (("imagefolder", "images"), ("imagefolder", "crops"), ("zip", "chips"),
                      ("webdataset", "crops"), ("parquet", "images")):
        out = tmp_path / f"exp-{fmt}-{what}"
        export(ws, out, format=fmt, what=what, progress=False)
        outs.append(out)
    n_images = 0
    for out in outs:
        files = [p for p in out.rglob("*") if p.is_file()]
        assert files, out
        for p in files:
            raw = p.read_bytes()
            rel = str(p.relative_to(out))
            for bad in [b for n in names for b in _names(n)] + [b"Alice private photos"]:
                assert bad not in raw, f"{rel} mentions {bad!r}"
                assert bad.decode("utf-8", "ignore") not in rel
            for m in MARKERS:
                assert m not in raw, f"{rel}: {m!r} survived"
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
                _assert_clean_image(raw, rel)
                n_images += 1
            elif p.suffix in (".tar", ".zip", ".parquet"):
                _inner_images_clean(p)
    assert n_images > 0


def _inner_images_clean(p: Path) -> None:
    """Images packed inside zip/tar/parquet are checked one by one too."""
    import tarfile
    import zipfile

    blobs: list[bytes] = []
    if p.suffix == ".zip":
        with zipfile.ZipFile(p) as z:
            blobs = [z.read(n) for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png", ".webp"))]
    elif p.suffix == ".tar":
        with tarfile.open(p) as t:
            blobs = [t.extractfile(m).read() for m in t.getmembers()
                     if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png", ".webp"))]
    else:
        import pyarrow.parquet as pq

        for row in pq.read_table(p).to_pylist():  # image columns are bytes or HF {"bytes", "path"} structs
            for v in row.values():
                for b in (v.values() if isinstance(v, dict) else [v]):
                    if isinstance(b, bytes) and b[:3] in (b"\xff\xd8\xff", b"\x89PN", b"RIF"):
                        blobs.append(b)
    assert blobs, f"no images found inside {p.name}"
    for b in blobs:
        _assert_clean_image(b, f"{p.name} member")
