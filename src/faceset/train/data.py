"""Training data from any of three sources, as one list of face samples.

- a workspace (catalog: main faces with a label, split = people.split, crops = faces.crop_key),
- an export folder (imagefolder ``split/label/*.jpg`` + manifest.csv; the files are already crops),
- a labelled folder (``labels.csv`` with a ``file`` column; whole photos or face chips that still
  need detect+align; split identity-disjoint by a group column, or by exact bytes when there is none).

Every sample carries a cache ``key`` so bottleneck features are computed once (see features.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import FacesetError
from .crops import CROP_VERSION

AGE_GROUPS = ((0, 2, "0-2"), (3, 12, "3-12"), (13, 19, "13-19"), (20, 39, "20-39"), (40, 59, "40-59"),
              (60, 10**6, "60+"))
SPLITS = ("train", "val", "test")


class DataError(FacesetError, ValueError):
    """The data source cannot be used for this label (user-facing)."""


def age_group(age: str | int | None) -> str:
    try:
        a = int(float(age))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return next(name for lo, hi, name in AGE_GROUPS if lo <= a <= hi)


@dataclass
class Sample:
    key: str  # cache key: crop_key for workspace faces, sha256 of file bytes otherwise
    label: str
    split: str
    groups: dict[str, str]
    load: Callable[[], np.ndarray | None]  # -> the 224x224x3 aligned crop, None = no face found
    face_id: int | None = None


@dataclass
class Dataset:
    kind: str  # workspace | export | folder
    root: Path
    label: str
    samples: list[Sample]
    cache_dir: Path
    datasheet_sha256: str | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # how to reopen it (labelled folders: group_by, chips, seed)

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def manifest_sha256(self) -> str:
        """Hash of what was trained on (key, label, split), for the model card when no datasheet exists."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.key):
            h.update(f"{s.key}\t{s.label}\t{s.split}\n".encode())
        return h.hexdigest()

    def fingerprint(self) -> dict:
        d = {"kind": self.kind, "path": str(self.root), "label": self.label, "n": len(self.samples),
             "manifest_sha256": self.manifest_sha256()}
        if self.datasheet_sha256:
            d["datasheet_sha256"] = self.datasheet_sha256
        return d


def load_dataset(path: str | Path, label: str, *, group_by: str | None = None, chips: bool = False,
                 seed: int = 0, cache_dir: str | Path | None = None, max_yaw: float | None = None) -> Dataset:
    """Open a workspace, an export folder or a labelled folder (see module doc).

    ``max_yaw`` (degrees, workspace only): leave out faces turned further (the selection's ``pose`` rule)."""
    root = Path(path)
    if (root / "faceset.json").exists():
        return from_workspace(root, label, max_yaw=max_yaw)
    if max_yaw is not None:
        raise DataError(f"{root}: --max-yaw needs a workspace (exports and folders carry no pose; "
                        "export with --max-yaw instead)")
    if (root / "manifest.csv").exists():
        return from_export(root, label)
    if (root / "labels.csv").exists():
        return from_folder(root, label, group_by=group_by, chips=chips, seed=seed,
                           cache_dir=Path(cache_dir) if cache_dir else None)
    raise DataError(f"{root}: not a workspace (faceset.json), export (manifest.csv) or labelled folder (labels.csv)")


# -- workspace ---------------------------------------------------------------------------
def from_workspace(root: Path, label: str, max_yaw: float | None = None) -> Dataset:
    """Main faces with ``label`` and a split, as curate's dataset_faces selects them (the same rows export uses)."""
    from ..curate.splits import dataset_faces
    from ..workspace import open_workspace

    ws = open_workspace(root)
    rows = [r for r in dataset_faces(ws, label=label, max_yaw=max_yaw) if r["label"] not in (None, "")
            and r["crop_key"]]
    scopes = ws.catalog.campaigns.scopes_of_faces(r["face_id"] for r in rows)  # contributors' ticks (collect/)
    rows = [r for r in rows if "training" in scopes.get(r["face_id"], ("training",))]
    if not rows:
        n = ws.catalog.labels.count_with_name(label)
        raise DataError(f"no labelled faces with a split for label {label!r} in {root} ({n} images carry it): "
                        "run scan, curate people and splits first")
    other = ws.catalog.labels.of_images(r["image_id"] for r in rows)
    samples = []
    for r in rows:
        groups = {k: v for k, v in other.get(r["image_id"], {}).items() if k != label}
        if "age" in groups:
            groups["age_group"] = age_group(groups["age"])
        samples.append(Sample(r["crop_key"], r["label"], r["split"], groups, _store_loader(ws, r["crop_key"]),
                              face_id=r["face_id"]))
    return Dataset("workspace", root, label, samples, ws.cache_dir)


def _store_loader(ws, key: str):
    def load():
        return _decode(ws.store.get(key))

    return load


# -- export folder -----------------------------------------------------------------------
def from_export(root: Path, label: str) -> Dataset:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    col = "label" if rows and f"label_{label}" not in rows[0] else f"label_{label}"
    samples, skipped = [], {}
    for r in rows:
        value = (r.get(col) or "").strip()
        path = root / r["file"]
        if not value or r.get("split") not in SPLITS or not path.is_file():
            reason = "no_label" if not value else "no_split" if r.get("split") not in SPLITS else "missing_file"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        groups = {k[len("label_"):]: v for k, v in r.items() if k.startswith("label_") and k != f"label_{label}"}
        if "age" in groups:
            groups["age_group"] = age_group(groups["age"])
        samples.append(Sample(_sha(path), value, r["split"], groups, _file_loader(path, detect=False)))
    if not samples:
        raise DataError(f"{root}: no exported items carry label {label!r}")
    sheet = root / "datasheet.md"
    return Dataset("export", root, label, samples, root / ".faceset-cache",
                   datasheet_sha256=_sha(sheet) if sheet.exists() else None, skipped=skipped)


# -- labelled folder (labels.csv) ----------------------------------------------------------
def from_folder(root: Path, label: str, *, group_by: str | None = None, chips: bool = False, seed: int = 0,
                ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), cache_dir: Path | None = None) -> Dataset:
    """Photos (or face ``chips``) listed in labels.csv; split by ``group_by`` column or by exact bytes."""
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and label not in rows[0]:
        raise DataError(f"{root}/labels.csv has no column {label!r}")
    samples, skipped = [], {}
    for r in rows:
        value = (r.get(label) or "").strip()
        path = root / r["file"]
        if not value or not path.is_file():
            reason = "no_label" if not value else "missing_file"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        sha = _sha(path)
        group = r[group_by] if group_by else sha  # byte-identical files land on one side
        key = hashlib.sha256(f"{sha}:{CROP_VERSION}:{'chip' if chips else 'photo'}".encode()).hexdigest()
        groups = {k: v for k, v in r.items() if k not in ("file", label, "source", "note") and k != group_by}
        if "age" in groups:
            groups["age_group"] = age_group(groups["age"])
        cache = Path(cache_dir or root / ".faceset-cache")
        samples.append(Sample(key, value, split_of(group, seed, ratios), groups,
                              _file_loader(path, detect=True, chip=chips, cached=crop_cache_path(cache, key))))
    if not samples:
        raise DataError(f"{root}: no rows carry label {label!r}")
    return Dataset("folder", root, label, samples, Path(cache_dir or root / ".faceset-cache"), skipped=skipped,
                   options={"group_by": group_by, "chips": chips, "seed": seed,
                            "cache_dir": str(cache_dir or root / ".faceset-cache")})


def split_of(group: str, seed: int, ratios: tuple[float, float, float]) -> str:
    """Deterministic identity-disjoint split: a hash of (seed, group) picks the side."""
    u = int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:12], 16) / 16**12
    return "train" if u < ratios[0] else "val" if u < ratios[0] + ratios[1] else "test"


# -- loading helpers -----------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def read_rgb(path: str | Path, max_side: int = 1600) -> np.ndarray:
    """Decode an image file upright (EXIF orientation applied) as HxWx3 uint8, long side <= ``max_side``.

    Same cap as scan's decoding, so a photo is detected at the resolution scan would use.
    """
    return read_rgb_scaled(path, max_side)[0]


def read_rgb_scaled(path: str | Path, max_side: int = 1600) -> tuple[np.ndarray, float]:
    """(rgb, original / decoded scale) for mapping boxes back to the file's pixels."""
    from PIL import ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        im = im.convert("RGB")
        k = 1.0
        if max(im.size) > max_side:
            k = max(im.size) / max_side
            im = im.resize((round(im.width / k), round(im.height / k)), Image.LANCZOS)
        return np.asarray(im), k


def crop_cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "crops" / key[:2] / f"{key}.jpg"


def detect_crop(path: Path, chip: bool):
    """The main face of a photo (or chip) as a FaceCrop, or None."""
    from .crops import chip_crops, face_crops

    found = (chip_crops if chip else face_crops)(read_rgb(path))
    return found[0] if found else None  # one labelled person per photo: the main face


def _crop_job(job: tuple) -> bool:
    path, chip, out = job
    f = detect_crop(Path(path), chip)
    _write_crop(Path(out), None if f is None else f.crop)
    return f is not None


def _write_crop(out: Path, crop: np.ndarray | None) -> None:
    """JPEG q95 like scan's stored crops (train sees what a workspace would give); empty file = no face."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    if crop is None:
        tmp.write_bytes(b"")
    else:
        Image.fromarray(crop).save(tmp, format="JPEG", quality=95)
    tmp.replace(out)


def prepare_crops(ds: "Dataset", *, workers: int = 2, progress: bool = True) -> dict:
    """Detect + align every not yet cached photo of a labelled folder, in ``workers`` processes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from ..progress import bar

    loads = [s.load for s in ds.samples]
    jobs = [(str(f.path), f.chip, str(f.cached)) for f in loads
            if getattr(f, "cached", None) is not None and not f.cached.exists()]
    found = 0
    with bar("detect + align", len(jobs), progress) as b:
        if workers > 1 and len(jobs) > 50:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                for ok in ex.map(_crop_job, jobs, chunksize=16):
                    found += ok
                    b.advance()
        else:
            for j in jobs:
                found += _crop_job(j)
                b.advance()
    return {"detected": len(jobs), "found": found}


def _file_loader(path: Path, *, detect: bool, chip: bool = False, cached: Path | None = None):
    def load():
        if not detect:  # exported crops are already aligned 224 px faces
            rgb = read_rgb(path)
            return rgb if rgb.shape[:2] == (224, 224) else np.asarray(Image.fromarray(rgb).resize((224, 224)))
        if not cached.exists():
            f = detect_crop(path, chip)
            _write_crop(cached, None if f is None else f.crop)
        data = cached.read_bytes()
        return _decode(data) if data else None

    load.path, load.chip, load.cached = path, chip, cached
    return load
