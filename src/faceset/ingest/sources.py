"""Enumerate the files of one SRC (folder, zip, tar, CSV/JSONL manifest, single file) as ``Item``s.

Streaming on purpose: items come one at a time in a deterministic (sorted)
order, so memory stays flat and a rerun after kill -9 walks the same order.
Archives are never extracted to disk: members are streamed in small chunks
with a size cap (a member whose first bytes are no image, or a zip member
inflating more than ``MAX_ZIP_RATIO`` times, is rejected before it is
inflated; nothing is ever inflated whole beyond the cap), and members that
would escape their folder (absolute paths, ``..``, symlinks, devices) become
rejected items with a reason instead of files.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from ..catalog.schema import CONSENT_BASES
from ..errors import UsageError
from ..imageio import DEFAULT_MAX_FILE_BYTES, Rejected, _describe_non_image, sniff


class IngestError(UsageError):
    """Fatal, user-facing problem with the request: a bad SRC, licence, consent basis, label spec or
    limit (CLI: exit 2, nothing touched)."""


# Files operating systems and tools scatter into photo folders: skipped silently, counted as "ignored".
JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini", ".directory", "icon\r"}
JUNK_DIRS = {"__macosx", ".git", ".svn", ".thumbnails", "@eadir", ".trash", ".trashes", ".spotlight-v100"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
PATH_COLUMNS = ("path", "file", "filename", "image", "file_name")
MEMBER_HEAD = 64 * 1024      # bytes of a member read first: no image magic -> rejected before the rest is inflated
MEMBER_CHUNK = 1 << 20       # members are read in chunks of this size, never more than the cap
MAX_ZIP_RATIO = 100          # a zip member inflating more than this (and past ZIP_RATIO_FLOOR) is a bomb:
ZIP_RATIO_FLOOR = 8 << 20    # photos barely compress (JPEG/PNG ~1:1, a flat BMP a few x)


@dataclass
class Item:
    path: str  # as recorded in files.path: relative to the source, printable
    fs_path: str | None = None  # real file to read (folder, manifest, single file)
    data: bytes | None = None  # already-read bytes (archive members)
    size: int | None = None
    columns: dict[str, str] = field(default_factory=dict)  # manifest row (for column labels)
    license: str | None = None
    consent: str | None = None
    consent_expires: str | None = None
    reject: Rejected | None = None
    ignored: bool = False  # OS junk: not recorded at all


@dataclass
class Source:
    kind: str  # folder|zip|tar|manifest|file
    uri: str  # absolute path it was read from
    default_name: str
    items: Callable[[], Iterator[Item]]
    count: Callable[[], int | None]
    rows: Callable[[], Iterator[dict]] | None = None  # manifest rows, for the consent pre-check


# Spellings people type for a consent basis (case, '-' or ' ' for '_' are always accepted).
CONSENT_ALIASES = {
    "licence": "license", "licensed": "license", "licenced": "license",
    "research": "research_exemption", "research_exempt": "research_exemption", "exemption": "research_exemption",
    "publicdomain": "public_domain", "pd": "public_domain",
    "consented": "consent", "informed_consent": "consent",
}


def normalize_consent(value: str | None, where: str) -> str | None:
    """A consent basis as stored (one of CONSENT_BASES): case, '-'/' ' and the aliases above are accepted;
    anything else is an IngestError naming the closest valid basis."""
    if value is None:
        return None
    v = "_".join(value.strip().lower().replace("-", " ").replace("_", " ").split())
    v = CONSENT_ALIASES.get(v, v)
    if v in CONSENT_BASES:
        return v
    close = difflib.get_close_matches(v, list(CONSENT_BASES) + list(CONSENT_ALIASES), n=1, cutoff=0.5)
    hint = f" (did you mean {CONSENT_ALIASES.get(close[0], close[0])}?)" if close else ""
    raise IngestError(f"{where}: consent basis {value!r} is not one of {', '.join(CONSENT_BASES)}{hint}")


def printable(name: str) -> str:
    """A path string SQLite and terminals accept: undecodable bytes become \\xNN escapes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_junk(name: str) -> bool:
    low = name.lower()
    return low in JUNK_FILES or name.startswith("._")


def open_source(src: str | Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, confine: bool = False) -> Source:
    """``confine``: a manifest's rows may only name files inside the manifest's folder (after resolving links);
    others become ``unsafe_path`` rejections. Off by default: a manifest may list any readable path."""
    p = Path(src)
    if not p.exists() and not p.is_symlink():
        raise IngestError(f"{src}: no such file or folder")
    uri = str(p.resolve())
    low = p.name.lower()
    if p.is_dir():
        return Source("folder", uri, p.resolve().name or "root", lambda: _folder_items(p, max_file_bytes),
                      lambda: _folder_count(p))
    if low.endswith(".zip"):
        _check_zip(p)
        return Source("zip", uri, _stem(p.name), lambda: _zip_items(p, max_file_bytes), lambda: _zip_count(p))
    if low.endswith(ARCHIVE_SUFFIXES):
        _check_tar(p)
        return Source("tar", uri, _stem(p.name), lambda: _tar_items(p, max_file_bytes), lambda: None)
    if low.endswith(MANIFEST_SUFFIXES):
        rows = lambda: _manifest_rows(p)  # noqa: E731
        _manifest_columns(p)  # fail early on an unusable manifest
        return Source("manifest", uri, _stem(p.name), lambda: _manifest_items(p, max_file_bytes, confine),
                      lambda: sum(1 for _ in _manifest_rows(p)), rows)
    if p.is_file():
        return Source("file", uri, p.name,
                      lambda: iter([_file_item(p, printable(p.name), max_file_bytes)]), lambda: 1)
    raise IngestError(f"{src}: not a folder, archive, manifest or file")


def _stem(name: str) -> str:
    low = name.lower()
    for s in sorted(ARCHIVE_SUFFIXES + MANIFEST_SUFFIXES, key=len, reverse=True):
        if low.endswith(s):
            return name[: -len(s)] or name
    return name


# -- folders -----------------------------------------------------------------
def _walk(root: Path) -> Iterator[tuple[str, str]]:
    """(absolute path, relative posix path) of every file, sorted, skipping junk dirs."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in JUNK_DIRS)
        rel_dir = os.path.relpath(dirpath, root)
        for fn in sorted(filenames):
            rel = fn if rel_dir == "." else f"{rel_dir}/{fn}".replace(os.sep, "/")
            yield os.path.join(dirpath, fn), rel


def _folder_count(root: Path) -> int:
    return sum(1 for _ in _walk(root))


def _folder_items(root: Path, cap: int) -> Iterator[Item]:
    # Symlinked files in the user's own folder are followed (their bytes are read, nothing is written
    # through them); symlinked folders are not walked, so link loops cannot hang the walk.
    for full, rel in _walk(root):
        name = printable(rel)
        if _is_junk(os.path.basename(rel)):
            yield Item(name, ignored=True)
            continue
        yield _file_item(Path(full), name, cap)


def _file_item(p: Path, name: str, cap: int) -> Item:
    try:
        st = p.stat()
    except FileNotFoundError:
        return Item(name, reject=Rejected("missing", "file not found (or a broken link)"))
    except OSError as e:
        return Item(name, reject=Rejected("unreadable", f"cannot stat ({e.strerror or e})"))
    if p.name.lower().endswith(ARCHIVE_SUFFIXES):
        return Item(name, size=st.st_size,
                    reject=Rejected("unsupported", "archive inside a source: pass it as its own SRC"))
    if not stat.S_ISREG(st.st_mode):
        return Item(name, reject=Rejected("unsupported", "not a regular file (device, pipe or socket)"))
    if st.st_size > cap:
        return Item(name, size=st.st_size,
                    reject=Rejected("too_large_file", f"file is {st.st_size:,} bytes, over the {cap:,} limit"))
    return Item(name, fs_path=str(p), size=st.st_size)


# -- archives ----------------------------------------------------------------
def _unsafe_member(name: str) -> str | None:
    """Why an archive member name would escape its folder, or None if it is safe."""
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        return "absolute path in archive"
    if any(part == ".." for part in PurePosixPath(n).parts):
        return "path escapes the archive folder (..)"
    if "\x00" in n:
        return "NUL byte in member name"
    return None


def _read_member(f, cap: int) -> bytes:
    """A member's bytes, streamed: the head first (no image magic: Rejected('not_image') without inflating the
    rest), then chunks up to ``cap`` (over it: Rejected('too_large_file')). Memory: at most cap + one chunk."""
    head = f.read(MEMBER_HEAD)
    if head and sniff(head) is None and head[4:8] != b"ftyp":
        raise Rejected("not_image", _describe_non_image(head))
    parts, n = [head], len(head)
    while n <= cap:
        b = f.read(min(MEMBER_CHUNK, cap + 1 - n))
        if not b:
            break
        parts.append(b)
        n += len(b)
    if n > cap:
        raise Rejected("too_large_file", f"member is over the {cap:,} limit")
    return b"".join(parts)


def _check_zip(p: Path) -> None:
    try:
        with zipfile.ZipFile(p) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise IngestError(f"{p}: not a readable zip archive ({e})") from None


def _zip_count(p: Path) -> int:
    with zipfile.ZipFile(p) as z:
        return sum(1 for i in z.infolist() if not i.is_dir())


def _zip_items(p: Path, cap: int) -> Iterator[Item]:
    with zipfile.ZipFile(p) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            name = printable(info.filename)
            if _is_junk(PurePosixPath(name).name) or any(
                    part.lower() in JUNK_DIRS for part in PurePosixPath(name).parts[:-1]):
                yield Item(name, ignored=True)
                continue
            why = _unsafe_member(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if why is None and mode and mode != stat.S_IFREG:
                why = "symlink member" if mode == stat.S_IFLNK else "special file member"
            if why:
                yield Item(name, reject=Rejected("unsafe_path", why))
                continue
            if info.flag_bits & 0x1:
                yield Item(name, size=info.file_size, reject=Rejected("unsupported", "encrypted zip member"))
                continue
            if info.file_size > cap:
                yield Item(name, size=info.file_size, reject=Rejected(
                    "too_large_file", f"member is {info.file_size:,} bytes, over the {cap:,} limit"))
                continue
            if info.file_size > ZIP_RATIO_FLOOR and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
                yield Item(name, size=info.file_size, reject=Rejected(
                    "bomb", f"zip bomb: {info.compress_size:,} bytes would inflate to {info.file_size:,} "
                            f"(over {MAX_ZIP_RATIO}x)"))
                continue
            try:
                with z.open(info) as f:
                    data = _read_member(f, cap)
            except Rejected as r:
                yield Item(name, size=info.file_size, reject=r)
                continue
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
                yield Item(name, size=info.file_size, reject=Rejected("corrupt", f"damaged zip member ({e})"))
                continue
            yield Item(name, data=data, size=len(data))


def _check_tar(p: Path) -> None:
    try:
        with tarfile.open(p) as t:
            t.next()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise IngestError(f"{p}: not a readable tar archive ({e})") from None


def _tar_items(p: Path, cap: int) -> Iterator[Item]:
    # Stream mode ("r|*"): one pass, no seeking, no member index held in memory.
    seen = 0
    try:
        with tarfile.open(p, "r|*") as t:
            for m in t:
                seen += 1
                name = printable(m.name)
                if m.isdir():
                    continue
                if _is_junk(PurePosixPath(name).name) or any(
                        part.lower() in JUNK_DIRS for part in PurePosixPath(name).parts[:-1]):
                    yield Item(name, ignored=True)
                    continue
                why = _unsafe_member(m.name)
                if why is None and (m.issym() or m.islnk()):
                    why = "symlink member" if m.issym() else "hard-link member"
                if why is None and not m.isreg():
                    why = "special file member (device, fifo)"
                if why:
                    yield Item(name, reject=Rejected("unsafe_path", why))
                    continue
                if m.size > cap:
                    yield Item(name, size=m.size, reject=Rejected(
                        "too_large_file", f"member is {m.size:,} bytes, over the {cap:,} limit"))
                    continue
                f = t.extractfile(m)
                try:
                    data = _read_member(f, cap) if f is not None else b""
                except Rejected as r:
                    yield Item(name, size=m.size, reject=r)
                    continue
                yield Item(name, data=data, size=len(data))
    except (tarfile.TarError, OSError, EOFError, zipfile.BadZipFile) as e:
        yield Item(f"(archive after member {seen})",
                   reject=Rejected("truncated", f"archive ends early or is damaged ({e}); later members unread"))


# -- manifests ---------------------------------------------------------------
def _manifest_rows(p: Path) -> Iterator[dict]:
    if p.name.lower().endswith(".csv"):
        with open(p, newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                yield {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
    else:
        with open(p, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:  # one bad line rejects that row only (as a ragged CSV row would be), not the manifest
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield {BAD_ROW: f"line {ln}: invalid JSON ({e.msg})"}
                    continue
                if not isinstance(obj, dict):
                    yield {BAD_ROW: f"line {ln}: not a JSON object"}
                    continue
                yield {str(k).strip().lower(): "" if v is None else str(v).strip() for k, v in obj.items()}


BAD_ROW = "\x00bad_row"  # key of a row that could not be parsed (never a real column name)


def _path_column(cols) -> str | None:
    return next((c for c in PATH_COLUMNS if c in cols), None)


def _manifest_columns(p: Path) -> set[str]:
    try:
        first = next((r for r in _manifest_rows(p) if BAD_ROW not in r), None)
    except (UnicodeDecodeError, csv.Error) as e:
        raise IngestError(f"{p}: unreadable manifest ({e})") from None
    if first is None:
        raise IngestError(f"{p}: manifest has no rows")
    if _path_column(first) is None:
        raise IngestError(f"{p}: manifest needs a column named one of {', '.join(PATH_COLUMNS)}")
    return set(first)


def _inside(target: Path, base: Path) -> bool:
    try:
        return Path(os.path.realpath(target)).is_relative_to(base)
    except (OSError, ValueError):
        return False


def row_value(row: dict, *names: str) -> str | None:
    for n in names:
        v = row.get(n)
        if v:
            return v
    return None


def _manifest_items(p: Path, cap: int, confine: bool = False) -> Iterator[Item]:
    base = p.resolve().parent
    for row in _manifest_rows(p):
        if BAD_ROW in row:
            yield Item(f"(manifest {row[BAD_ROW].split(':')[0]})", reject=Rejected("corrupt", row[BAD_ROW]))
            continue
        col = _path_column(row)
        rel = row.get(col, "") if col else ""
        if not rel:
            yield Item("(row without a path)", reject=Rejected("missing", "manifest row has an empty path"))
            continue
        target = Path(rel) if os.path.isabs(rel) else base / rel
        if confine and not _inside(target, base):
            yield Item(printable(rel), reject=Rejected("unsafe_path", "outside the manifest's folder (--confine)"))
            continue
        it = _file_item(target, printable(rel), cap)
        it.columns = row
        it.license = row_value(row, "license", "licence")
        it.consent = normalize_consent(row_value(row, "consent"), f"{p} ({printable(rel)})")
        it.consent_expires = row_value(row, "consent_expires")
        yield it
