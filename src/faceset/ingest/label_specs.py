"""Label SPECs: where an image's labels come from at ingest.

``folder`` / ``folder:NAME``      the file's parent folder name (default label name ``label``)
``column:A,B``                    manifest columns A and B
``regex:PATTERN``                 named groups of PATTERN matched against the file name
``utkface``                       preset: UTKFace ``age_gender_race_*`` names with their value maps

Value maps (``--label-map gender=0:male,1:female``, repeatable) rewrite raw
values; unmapped values are kept as they are. Missing or empty values give no
label row (an unknown label is absent, never an empty string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .sources import IngestError

PRESETS: dict[str, tuple[str, dict[str, dict[str, str]]]] = {
    # Two UTKFace names have three fields (61_1_<ts>: gender only; 61_3_<ts>: 3 is no gender code, so
    # which field is missing cannot be told and both stay empty): race only counts when gender matched.
    "utkface": (
        r"regex:^(?P<age>\d{1,3})_(?:(?P<gender>[01])_(?:(?P<race>[0-4])_)?)?(?:\d_)?\d{8,}",
        {
            "gender": {"0": "male", "1": "female"},
            "race": {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"},
        },
    ),
}


@dataclass
class LabelSpec:
    kind: str  # none|folder|column|regex
    names: list[str] = field(default_factory=list)
    regex: re.Pattern | None = None
    maps: dict[str, dict[str, str]] = field(default_factory=dict)

    def extract(self, path: str, columns: dict[str, str] | None = None) -> dict[str, str]:
        """Labels for one file: ``path`` relative to its source, ``columns`` its manifest row."""
        raw: dict[str, str | None] = {}
        if self.kind == "folder":
            parent = PurePosixPath(path).parent.name
            raw[self.names[0]] = parent or None
        elif self.kind == "column":
            cols = columns or {}
            for n in self.names:
                raw[n] = cols.get(n)
        elif self.kind == "regex":
            m = self.regex.search(PurePosixPath(path).name)
            if m:
                raw.update(m.groupdict())
        out = {}
        for k, v in raw.items():
            if v is None or str(v).strip() == "":
                continue
            v = str(v).strip()
            k = k.lower()
            out[k] = self.maps.get(k, {}).get(v, v)
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "names": self.names,
                "regex": self.regex.pattern if self.regex else None, "maps": self.maps}


def parse_label_maps(items: list[str] | dict | None) -> dict[str, dict[str, str]]:
    """``["gender=0:male,1:female", ...]`` -> {"gender": {"0": "male", "1": "female"}}."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in items.items()}
    out: dict[str, dict[str, str]] = {}
    for s in items:
        name, sep, pairs = s.partition("=")
        if not sep or not name.strip():
            raise IngestError(f"--label-map {s!r}: expected NAME=RAW:VALUE,RAW:VALUE")
        m = out.setdefault(name.strip().lower(), {})
        for pair in pairs.split(","):
            raw, sep2, val = pair.partition(":")
            if not sep2:
                raise IngestError(f"--label-map {s!r}: {pair!r} is not RAW:VALUE")
            m[raw.strip()] = val.strip()
    return out


def parse_spec(spec: str | None, label_map: list[str] | dict | None = None) -> LabelSpec:
    maps = parse_label_maps(label_map)
    if not spec:
        if maps:
            raise IngestError("--label-map needs --labels (folder, column:..., regex:... or utkface)")
        return LabelSpec("none")
    spec = spec.strip()
    if spec.lower() in PRESETS:
        preset, pmaps = PRESETS[spec.lower()]
        s = parse_spec(preset)
        s.maps = {**pmaps, **{k: {**pmaps.get(k, {}), **v} for k, v in maps.items()}}
        return s
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "folder":
        name = (arg.strip() or "label").lower()
        return LabelSpec("folder", [name], maps=maps)
    if kind == "column":
        names = [n.strip().lower() for n in arg.split(",") if n.strip()]
        if not names:
            raise IngestError("--labels column:NAME[,NAME...] needs at least one column name")
        return LabelSpec("column", names, maps=maps)
    if kind == "regex":
        try:
            rx = re.compile(arg)
        except re.error as e:
            raise IngestError(f"--labels regex: invalid pattern ({e})") from None
        if not rx.groupindex:
            raise IngestError("--labels regex: the pattern needs named groups, e.g. (?P<age>\\d+)")
        return LabelSpec("regex", [n.lower() for n in rx.groupindex], regex=rx,
                         maps=maps)
    raise IngestError(
        f"--labels {spec!r}: expected folder[:NAME], column:A,B, regex:PATTERN or one of {', '.join(PRESETS)}")
