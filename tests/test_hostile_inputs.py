"""Issue #15 (hardening B): hostile inputs, budgets and environmental errors.

One pixel / memory budget on every decode path (long thin images, header-only JPEGs, bombs), the guarded reader
for user-given files (FIFOs, /dev/zero links), archive members streamed with a cap, manifests that are partly bad
or point outside their folder, consent spellings, the blocklist at ingest, and one-line exit-2 errors for every
environmental failure (not a workspace, garbage catalog, read-only, disk full). Nothing here needs a real full
disk or a read-only mount: the failing call is monkeypatched.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sqlite3
import threading
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceset import imageio
from faceset.cli import app
from faceset.ingest import IngestError, ingest

KW = dict(license="test-only", consent="research_exemption", progress=False, workers=1)


@pytest.fixture
def runner():
    return CliRunner()


def _png(w: int, h: int, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def _one_line_error(r, code: int = 2) -> str:
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("creating workspace")]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr  # (rich may wrap the info line)
    return lines[0]


def _tree_hash(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


# -- 1. one budget: aspect ratio and working copies --------------------------------------------------------------
def test_long_thin_png_is_rejected_by_every_decode_path(tmp_path, ws):
    from faceset.scan import detect
    from faceset.scan.pipeline import decode as scan_decode
    from faceset.scan.pipeline import process

    strip = _png(100_000, 32)
    with pytest.raises(imageio.Rejected) as e:
        imageio.decode(strip)
    assert e.value.code == "too_elongated" and "100000x32" in e.value.reason
    with pytest.raises(imageio.Rejected):
        scan_decode(strip)
    res = process((1, strip))  # a stored copy from an older ingest: an error with the reason, no allocation
    assert res["status"] == "error" and res["reason"].startswith("too_elongated")

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "strip.png").write_bytes(strip)
    rep = ingest(ws, [tmp_path / "in"], **KW)
    assert rep.rejected == {"too_elongated": 1} and rep.added == 0

    p = tmp_path / "thin.png"
    p.write_bytes(_png(60_000, 40))
    tracemalloc.start()
    try:
        rec = detect([p])[0]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rec["rejected"].startswith("too_elongated") and rec["faces"] == []
    assert peak < 64 * 2**20, f"detect peaked at {peak / 2**20:.0f} MiB on a 60000x40 PNG"


def test_scan_works_on_a_bounded_copy(data_dir):
    from faceset.scan.pipeline import decode as scan_decode

    big = _png(imageio.WORK_MAX_SIDE * 2, 900)  # lossless and wide: no JPEG draft to shrink it
    rgb, k = scan_decode(big)
    assert max(rgb.shape[:2]) <= imageio.WORK_MAX_SIDE and k == pytest.approx(2.0, rel=0.01)
    rgb, k = scan_decode((data_dir / "groups" / "two_people.jpg").read_bytes())
    assert max(rgb.shape[:2]) <= imageio.WORK_MAX_SIDE


def test_budget_reasons_quote_max_pixels_and_no_raw_warnings(monkeypatch, recwarn):
    with pytest.raises(imageio.Rejected) as e:
        imageio.decode(_png(400, 400), max_pixels=10_000)
    assert e.value.code == "bomb" and "--max-pixels 10,000" in e.value.reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own guard fires first: still our wording
    with pytest.raises(imageio.Rejected) as e:
        imageio.decode(_png(400, 400), max_pixels=10_000)
    assert e.value.code == "bomb" and "--max-pixels" in e.value.reason and "DOS" not in e.value.reason
    imageio.decode(_png(40, 40))  # 1600 px: over Pillow's warning limit (1000), under its error limit (2000)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_jpeg_header_claiming_more_than_its_data_is_truncated():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((200, 200, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    d = bytearray(buf.getvalue())
    i = d.find(b"\xff\xc0")
    d[i + 5:i + 9] = (9000).to_bytes(2, "big") + (9000).to_bytes(2, "big")
    for pixels in (False, True):
        with pytest.raises(imageio.Rejected) as e:
            imageio.decode(bytes(d), pixels=pixels)
        assert e.value.code == "truncated" and "9000x9000" in e.value.reason
    imageio.decode(buf.getvalue(), pixels=False)  # the honest original still decodes


def test_no_object_reprs_in_reasons():
    for data in (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b"\xff\xd8\xff" + b"\x01" * 64, b"GIF89a" + b"\x07" * 40):
        with pytest.raises(imageio.Rejected) as e:
            imageio.decode(data)
        assert "object at 0x" not in e.value.reason and "BytesIO" not in e.value.reason, e.value.reason


# -- 2. the guarded reader: FIFOs and device links -----------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "fifo.jpg"
    os.mkfifo(p)
    return p


@pytest.fixture
def zero_link(tmp_path):
    p = tmp_path / "zero.jpg"
    p.symlink_to("/dev/zero")
    return p


def _in_thread(fn, timeout=20.0):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("which", ["fifo", "zero_link"])
def test_detect_and_forget_refuse_non_regular_files(request, which, ws):
    from faceset.privacy.forget import ForgetError, selfie_embeddings
    from faceset.scan import detect

    p = request.getfixturevalue(which)
    with pytest.raises(imageio.Rejected) as e:
        _in_thread(lambda: imageio.read_file(p))
    assert e.value.code == "unsupported" and "regular file" in e.value.reason
    rec = _in_thread(lambda: detect([p]))[0]
    assert rec["rejected"].startswith("unsupported") and "regular file" in rec["rejected"]
    with pytest.raises(ForgetError, match="not a regular file"):
        _in_thread(lambda: selfie_embeddings([p]))


def test_read_file_caps_size(tmp_path):
    p = tmp_path / "big.jpg"
    p.write_bytes(b"\xff\xd8\xff" + b"\x00" * 5000)
    with pytest.raises(imageio.Rejected) as e:
        imageio.read_file(p, max_file_bytes=1000)
    assert e.value.code == "too_large_file"
    with pytest.raises(imageio.Rejected) as e:
        imageio.read_file(tmp_path / "nope.jpg")
    assert e.value.code == "missing"


def test_cli_forget_and_detect_on_fifo_one_line(runner, fifo, ws):
    r = _in_thread(lambda: runner.invoke(app, ["forget", str(fifo), "-w", str(ws.root), "--dry-run"]))
    line = _one_line_error(r)
    assert "regular file" in line
    r = _in_thread(lambda: runner.invoke(app, ["detect", str(fifo), "--json"]))
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["rejected"].startswith("unsupported")


# -- 3. environmental failures: one line, exit 2 ----------------------------------------------------------------------
def test_workspace_that_is_a_regular_file(runner, tmp_path, data_dir):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    before = _tree_hash(tmp_path)
    for argv in (["init", str(f)], ["status", "-w", str(f)],
                 ["ingest", str(data_dir / "groups"), "-w", str(f), "--license", "x", "--consent", "consent"]):
        line = _one_line_error(runner.invoke(app, argv))
        assert "is a file" in line or "not a workspace" in line, line
    assert _tree_hash(tmp_path) == before


def test_garbage_catalog(runner, tmp_path):
    from faceset import init_workspace

    w = init_workspace(tmp_path / "ws")
    w.close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "ws" / f"catalog.db{suffix}").unlink(missing_ok=True)
    (tmp_path / "ws" / "catalog.db").write_bytes(b"this is not sqlite" * 100)
    line = _one_line_error(runner.invoke(app, ["status", "-w", str(tmp_path / "ws")]))
    assert "catalog" in line and ("damaged" in line or "not a faceset catalog" in line)


def test_read_only_workspace_even_status(runner, ws, monkeypatch):
    root = ws.root

    def ro(*a, **k):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr("faceset.workspace.Catalog", ro)
    line = _one_line_error(runner.invoke(app, ["status", "-w", str(root)]))
    assert "read-only" in line


def test_disk_full_in_ingest_is_one_line(runner, tmp_path, data_dir, monkeypatch):
    from faceset.store import Store

    def full(self, data, sync=False):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / "tmp" / "x"))

    monkeypatch.setattr(Store, "put", full)
    from faceset import init_workspace

    init_workspace(tmp_path / "ws").close()
    r = runner.invoke(app, ["ingest", str(data_dir / "groups"), "-w", str(tmp_path / "ws"), "--license", "x",
                            "--consent", "consent", "--workers", "1", "--json"])
    line = _one_line_error(r)
    assert "disk full" in line and "rerun" in line


def test_disk_full_in_sqlite_with_chained_rollback_is_one_line(runner, ws, monkeypatch):
    def boom(*a, **k):
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError:
            raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904 - as sqlite

    monkeypatch.setattr("faceset.status.workspace_status", boom)
    line = _one_line_error(runner.invoke(app, ["status", "-w", str(ws.root)]))
    assert "disk full" in line


def test_disk_full_in_scan_is_one_line(runner, tmp_path, data_dir, monkeypatch):
    from faceset import init_workspace
    from faceset.store import Store

    w = init_workspace(tmp_path / "ws")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "two.jpg").write_bytes((data_dir / "groups" / "two_people.jpg").read_bytes())
    ingest(w, [tmp_path / "in"], **KW)
    w.close()

    def full(self, data, sync=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "put", full)  # the parent writes chips and crops
    line = _one_line_error(runner.invoke(app, ["scan", "-w", str(tmp_path / "ws"), "--workers", "1", "--json"]))
    assert "disk full" in line


def _enospc_inside_rollback(*a, **k):
    """What a full disk looks like from a stage: the write fails, then SQLite cannot roll back."""
    try:
        raise OSError(errno.ENOSPC, "No space left on device", "/ws/store/tmp/abc")
    except OSError:
        raise sqlite3.OperationalError("cannot rollback - no transaction is active")  # noqa: B904 - as sqlite


@pytest.mark.parametrize("target,argv", [
    ("faceset.privacy.forget", ["forget", "SELFIE", "--yes"]),
    ("faceset.export.export", ["export", "OUT"]),
])
def test_disk_full_in_forget_and_export_is_one_line(runner, ws, tmp_path, monkeypatch, target, argv):
    import importlib

    mod, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(mod), name, _enospc_inside_rollback)  # what the CLI imports
    selfie = tmp_path / "selfie.png"
    selfie.write_bytes(_png(64, 64))
    argv = [str(selfie) if a == "SELFIE" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    line = _one_line_error(runner.invoke(app, [*argv, "-w", str(ws.root)]))
    assert "disk full" in line


def test_environmental_error_classification():
    from faceset.workspace import CorruptCatalog, DiskFull, ReadOnlyWorkspace, environmental_error

    assert isinstance(environmental_error(OSError(errno.ENOSPC, "full")), DiskFull)
    assert isinstance(environmental_error(OSError(errno.EROFS, "ro", "/x")), ReadOnlyWorkspace)
    assert isinstance(environmental_error(sqlite3.DatabaseError("file is not a database")), CorruptCatalog)
    assert isinstance(environmental_error(sqlite3.OperationalError("database or disk is full")), DiskFull)
    assert environmental_error(ValueError("a bug")) is None


def test_missing_store_object_is_a_workspace_error():
    from faceset.errors import WorkspaceError
    from faceset.store import StoreError

    assert issubclass(StoreError, WorkspaceError)


# -- 4. archives streamed with a cap ----------------------------------------------------------------------------------
def test_zip_bomb_stays_small(tmp_path, ws, monkeypatch):
    z = tmp_path / "bomb.zip"
    member = 24 * 2**20
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(6):
            zf.writestr(f"zeros{i}.jpg", b"\x00" * member)
        zf.writestr("png_then_zeros.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * member)
    assert z.stat().st_size < 2**20
    tracemalloc.start()
    try:
        rep = ingest(ws, [z], **KW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep.added == 0 and rep.rejected == {"bomb": 7}, rep.rejected  # by ratio, before inflating anything
    assert "--max-pixels" not in rep.rejects[0][1] and "inflate" in rep.rejects[0][1]
    assert peak < 16 * 2**20, f"ingest of a zip bomb peaked at {peak / 2**20:.0f} MiB"

    monkeypatch.setattr("faceset.ingest.sources.MAX_ZIP_RATIO", 10**9)  # no ratio check: the head sniff still holds
    tracemalloc.start()
    try:
        rep = ingest(ws, [z], source_name="again", **KW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep.rejected.get("not_image") == 6 and rep.added == 0, rep.rejected
    assert peak < 3 * member, f"peaked at {peak / 2**20:.0f} MiB"  # one image-looking member at a time


def test_tar_member_without_image_magic_is_not_inflated(tmp_path, ws):
    import tarfile

    t = tmp_path / "a.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        info = tarfile.TarInfo("zeros.jpg")
        info.size = 64 * 2**20
        tf.addfile(info, io.BytesIO(b"\x00" * info.size))
        good = _png(64, 64)
        info = tarfile.TarInfo("ok.png")
        info.size = len(good)
        tf.addfile(info, io.BytesIO(good))
    tracemalloc.start()
    try:
        rep = ingest(ws, [t], **KW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep.added == 1 and rep.rejected == {"not_image": 1}
    assert "zero bytes" in rep.rejects[0][1]
    assert peak < 48 * 2**20  # tarfile's own gzip buffering (~30 MiB, whatever the member size), not the member


# -- 6. manifests and consent spellings ----------------------------------------------------------------------------
def test_one_bad_jsonl_line_rejects_that_row_only(tmp_path, ws):
    d = tmp_path / "m"
    d.mkdir()
    for i in range(2):
        (d / f"{i}.png").write_bytes(_png(64, 64, 60 + 40 * i))
    (d / "list.jsonl").write_text('{"path": "0.png"}\n{"path": "1.png",,}\n[1, 2]\n{"path": "1.png"}\n')
    rep = ingest(ws, [d / "list.jsonl"], **KW)
    assert rep.added == 2 and rep.rejected == {"corrupt": 2}
    assert {p for p, _ in rep.rejects} == {"(manifest line 2)", "(manifest line 3)"}


def test_confine_keeps_manifest_rows_in_their_folder(tmp_path, ws):
    (tmp_path / "outside.png").write_bytes(_png(64, 64, 10))
    d = tmp_path / "m"
    d.mkdir()
    (d / "in.png").write_bytes(_png(64, 64, 200))
    (d / "link.png").symlink_to(tmp_path / "outside.png")
    (d / "list.csv").write_text(f"path\nin.png\n../outside.png\n{tmp_path / 'outside.png'}\nlink.png\n")
    rep = ingest(ws, [d / "list.csv"], confine=True, **KW)
    assert rep.added == 1 and rep.rejected == {"unsafe_path": 3}
    assert all("--confine" in r for _, r in rep.rejects)
    rep = ingest(ws, [d / "list.csv"], source_name="open", **KW)  # the default: any readable path
    assert rep.rejected == {} and rep.added + rep.duplicates + rep.skipped == 4


@pytest.mark.parametrize("spelling,stored", [("research-exemption", "research_exemption"), ("licence", "license"),
                                              ("Public Domain", "public_domain"), ("CONSENT", "consent")])
def test_consent_aliases(tmp_path, ws, spelling, stored):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png(64, 64))
    rep = ingest(ws, [tmp_path / "in"], license="x", consent=spelling, progress=False, workers=1)
    assert rep.added == 1 and rep.sources[0]["consent"] == stored


def test_bad_consent_names_the_closest(tmp_path, ws):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png(64, 64))
    with pytest.raises(IngestError, match="did you mean research_exemption"):
        ingest(ws, [tmp_path / "in"], license="x", consent="reserch_exemtion", progress=False)
    with pytest.raises(IngestError, match="not one of"):
        ingest(ws, [tmp_path / "in"], license="x", consent="because", progress=False)


# -- 5. the blocklist at ingest --------------------------------------------------------------------------------------
def test_blocked_person_is_stopped_at_ingest(tmp_path, ws, data_dir):
    from faceset.privacy.blocklist import add_template
    from faceset.scan import analyze

    src = data_dir / "identities" / "barack_obama"
    photo = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    rgb = imageio.decode(photo.read_bytes(), clean=False).rgb
    emb = np.stack([f.embedding for f in analyze(rgb, crops=False)][:1])
    add_template(ws, emb, 0.36)
    d = tmp_path / "again"
    d.mkdir()
    (d / "obama_again.jpg").write_bytes(photo.read_bytes())
    (d / "plain.png").write_bytes(_png(64, 64))
    rep = ingest(ws, [d], **KW)
    assert rep.rejected.get("blocked") == 1 and rep.added == 1
    paths = [r[0] for r in ws.catalog.q("SELECT path FROM files")]
    assert "obama_again.jpg" not in paths and any(p.startswith("(blocked ") for p in paths)
    shas = {r[0] for r in ws.catalog.q("SELECT sha256 FROM files WHERE reason_code='blocked'")}
    assert shas == {None}
    assert len(list(ws.store.keys())) == 1  # only plain.png's copy
    rep = ingest(ws, [d], **KW)  # a rerun re-records the same row
    assert ws.catalog.q("SELECT COUNT(*) FROM files WHERE reason_code='blocked'")[0][0] == 1
    d2 = tmp_path / "pool"
    d2.mkdir()
    (d2 / "obama.jpg").write_bytes(photo.read_bytes())
    rep = ingest(ws, [d2], license="x", consent="consent", progress=False, workers=2)  # forkserver workers
    assert rep.rejected == {"blocked": 1} and rep.added == 0
    assert len(list(ws.store.keys())) == 1


# -- 7. faceset verify ---------------------------------------------------------------------------------------
def test_verify_cli(runner, tmp_path):
    from faceset import init_workspace

    w = init_workspace(tmp_path / "ws")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png(64, 64))
    ingest(w, [tmp_path / "in"], **KW)
    key = next(iter(w.store.keys()))
    w.close()
    r = runner.invoke(app, ["verify", "-w", str(tmp_path / "ws"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ok"] is True
    w2 = init_workspace(tmp_path / "ws")
    w2.store.path(key).unlink()
    w2.close()
    r = runner.invoke(app, ["verify", "-w", str(tmp_path / "ws"), "--repair"])
    line = _one_line_error(r)
    assert "missing or damaged" in line


# -- 8 (check). hostile names never reach the terminal raw -----------------------------------------------------------
def test_escape_sequences_in_names_are_escaped_in_tables(runner, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    evil = "evil\x1b[2J\x1b]0;owned\x07\nrow.jpg"
    (d / evil).write_bytes(b"\xff\xd8\xff\xe0 not really")
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("m\x1b[31mred\n.png", b"junk")
    ws_dir = str(tmp_path / "ws")
    for src in (d, z):
        r = runner.invoke(app, ["ingest", str(src), "-w", ws_dir, "--license", "x", "--consent", "consent"])
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.output and "\x07" not in r.output
        assert "\\x1b" in r.output
    r = runner.invoke(app, ["detect", str(d / evil)])
    assert r.exit_code == 0 and "\x1b" not in r.output and "\x07" not in r.output  # (the long path is cut)
    r = runner.invoke(app, ["detect", str(d / evil), "--json"])
    assert json.loads(r.stdout)[0]["path"] == str(d / evil)  # JSON stays exact


def test_damaged_stored_copy_is_a_store_error(ws, tmp_path):
    from faceset.store import StoreError

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png(64, 64))
    ingest(ws, [tmp_path / "in"], **KW)
    iid, key = ws.catalog.q("SELECT id, store_key FROM images")[0]
    p = ws.store.path(key)
    p.chmod(0o644)
    p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(StoreError, match="damaged"):
        ws.image_rgb(iid)
    p.unlink()
    with pytest.raises(StoreError, match="missing"):
        ws.image_rgb(iid)
