"""On-disk layouts: imagefolder, zip shards, WebDataset tars, Parquet.

Each writer takes items in (class, split, id) order and returns, per item, where
it landed (for the manifest). Archive members get fixed timestamps and owners,
so rebuilding the same selection gives byte-identical shards.
"""

from __future__ import annotations

import io
import json
import random
import re
import tarfile
import zipfile
from pathlib import Path

from .select import ALL_CLASS, Item

FORMATS = ("imagefolder", "zip", "webdataset", "parquet")


def safe(name: str) -> str:
    """A label value as a folder/file name component (no separators, no dot-files)."""
    s = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._") or "_"
    return s[:80]


class Writer:
    def __init__(self, root: Path, classes: list[str], label_names: list[str], *, shard_size: int, sample: int,
                 seed: int):
        self.root = root
        self.classes = classes
        self.label_names = label_names
        self.shard_size = max(1, int(shard_size))
        self.sample = sample
        self.seed = seed
        self.files: list[str] = []

    def add(self, item: Item, data: bytes, ext: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageFolderWriter(Writer):
    """``<split>/<class>/<id>.<ext>``: what torchvision's ImageFolder and most tools read."""

    def add(self, item, data, ext):
        rel = f"{item.split}/{safe(item.cls)}/{item.uid}.{ext}"
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return rel


class ZipWriter(Writer):
    """``<class>_<NNNN>.zip`` with ``shard_size`` images each, plus ``<class>_sample.zip``.

    Members are ``<split>/<class>/<id>.<ext>`` so the split survives unzipping.
    """

    def __init__(self, root, classes, label_names, *, shard_size, sample, seed, items: list[Item]):
        super().__init__(root, classes, label_names, shard_size=shard_size, sample=sample, seed=seed)
        by_class: dict[str, list[str]] = {}
        for it in items:
            by_class.setdefault(it.cls, []).append(it.uid)
        rng = random.Random(seed)
        self._in_sample = {
            u for uids in by_class.values() for u in rng.sample(sorted(uids), min(sample, len(uids)))
        } if sample > 0 else set()
        self._cls: str | None = None
        self._n = 0
        self._shard = ""
        self._zip: zipfile.ZipFile | None = None
        self._sample_zip: zipfile.ZipFile | None = None

    def _open(self, name: str) -> zipfile.ZipFile:
        self.files.append(name)
        return zipfile.ZipFile(self.root / name, "w", compression=zipfile.ZIP_STORED)

    @staticmethod
    def _put(z: zipfile.ZipFile, name: str, data: bytes) -> None:
        z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)

    def add(self, item, data, ext):
        c = safe(item.cls)
        if item.cls != self._cls:
            self.close()
            self._cls, self._n = item.cls, 0
            if self._in_sample:
                self._sample_zip = self._open(f"{c}_sample.zip")
        if self._n % self.shard_size == 0:
            if self._zip is not None:
                self._zip.close()
            self._shard = f"{c}_{self._n // self.shard_size:04d}.zip"
            self._zip = self._open(self._shard)
        member = f"{item.split}/{c}/{item.uid}.{ext}"
        self._put(self._zip, member, data)
        if item.uid in self._in_sample and self._sample_zip is not None:
            self._put(self._sample_zip, member, data)
        self._n += 1
        return f"{self._shard}:{member}"

    def close(self):
        for z in (self._zip, self._sample_zip):
            if z is not None:
                z.close()
        self._zip = self._sample_zip = None


class WebDatasetWriter(Writer):
    """``<split>-NNNNNN.tar`` shards: ``<id>.<ext>`` + ``<id>.json`` (+ ``<id>.cls`` with a label)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._tars: dict[str, tuple[tarfile.TarFile, int, str]] = {}
        self._cls_index = {c: i for i, c in enumerate(self.classes)}

    def _put(self, tar: tarfile.TarFile, name: str, data: bytes) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
        ti.uname = ti.gname = ""
        tar.addfile(ti, io.BytesIO(data))

    def add(self, item, data, ext):
        tar, n, name = self._tars.get(item.split, (None, 0, ""))
        if tar is None or n % self.shard_size == 0:
            if tar is not None:
                tar.close()
            name = f"{item.split}-{n // self.shard_size:06d}.tar"
            self.files.append(name)
            tar = tarfile.open(self.root / name, "w", format=tarfile.USTAR_FORMAT)
        self._put(tar, f"{item.uid}.{ext}", data)
        meta = item.manifest_row(f"{name}:{item.uid}.{ext}")
        self._put(tar, f"{item.uid}.json", json.dumps(meta, sort_keys=True).encode())
        if self.classes != [ALL_CLASS]:  # no --label: no class index to write
            self._put(tar, f"{item.uid}.cls", str(self._cls_index[item.cls]).encode())
        self._tars[item.split] = (tar, n + 1, name)
        return f"{name}:{item.uid}.{ext}"

    def close(self):
        for tar, _, _ in self._tars.values():
            tar.close()
        self._tars = {}


class ParquetWriter(Writer):
    """``data/<split>-NNNNN.parquet`` with Hugging Face feature metadata.

    The ``huggingface`` schema metadata makes ``datasets`` decode ``image`` as an
    Image and ``label`` as a ClassLabel, offline, with no loading script.
    """

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        (self.root / "data").mkdir(exist_ok=True)
        self._rows: dict[str, list[dict]] = {}
        self._count: dict[str, int] = {}
        self._cls_index = {c: i for i, c in enumerate(self.classes)}

    def _schema(self):
        import pyarrow as pa

        cols = [("id", pa.string()), ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                ("label", pa.int64()), ("split", pa.string()), ("person", pa.string()), ("source", pa.string()),
                ("license", pa.string()), ("consent", pa.string())]
        cols += [(f"label_{n}", pa.string()) for n in self.label_names]
        feats = {n: {"dtype": "string", "_type": "Value"} for n, _ in cols}
        feats["image"] = {"_type": "Image"}
        feats["label"] = {"names": list(self.classes), "_type": "ClassLabel"}
        meta = {"huggingface": json.dumps({"info": {"features": feats}})}
        return pa.schema(cols, metadata=meta)

    def add(self, item, data, ext):
        rows = self._rows.setdefault(item.split, [])
        n = self._count.get(item.split, 0) + len(rows)
        name = f"data/{item.split}-{n // self.shard_size:05d}.parquet"
        row = {"id": item.uid, "image": {"bytes": data, "path": f"{item.uid}.{ext}"},
               "label": self._cls_index[item.cls], "split": item.split, "person": item.person or "",
               "source": item.source, "license": item.license, "consent": item.consent}
        row.update({f"label_{k}": item.labels.get(k, "") for k in self.label_names})
        rows.append(row)
        if len(rows) >= self.shard_size:
            self._flush(item.split)
        return f"{name}#{item.uid}"

    def _flush(self, split: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._rows.get(split) or []
        if not rows:
            return
        n = self._count.get(split, 0)
        name = f"data/{split}-{n // self.shard_size:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=self._schema()), self.root / name, row_group_size=256)
        self.files.append(name)
        self._count[split] = n + len(rows)
        self._rows[split] = []

    def close(self):
        for split in list(self._rows):
            self._flush(split)


def make_writer(fmt: str, root: Path, items: list[Item], label_names: list[str], *,
                shard_size: int, sample: int, seed: int) -> Writer:
    classes = sorted({it.cls for it in items})
    kw = dict(shard_size=shard_size, sample=sample, seed=seed)
    if fmt == "imagefolder":
        return ImageFolderWriter(root, classes, label_names, **kw)
    if fmt == "zip":
        return ZipWriter(root, classes, label_names, items=items, **kw)
    if fmt == "webdataset":
        return WebDatasetWriter(root, classes, label_names, **kw)
    if fmt == "parquet":
        return ParquetWriter(root, classes, label_names, **kw)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
