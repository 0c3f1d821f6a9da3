"""`datasheet.md` in the sections of Gebru et al., "Datasheets for Datasets" (2018/2021).

Every number comes from the exported records or the catalog, so the sheet
changes when the data does. It never names original files or paths: sources
appear by the name the owner gave them, or as ``source-<id>`` when ingest named
them after their folder or file.
"""

from __future__ import annotations

from collections import Counter

from ..catalog import now
from ..workspace import Workspace
from .result import ExportReport
from .select import ALL_CLASS, Selection, public_source_names, split_order

SECTIONS = ("Motivation", "Composition", "Collection process", "Preprocessing, cleaning and labelling",
            "Uses", "Distribution", "Maintenance")

_REASONS = {
    "near_duplicate": "near-duplicate of a kept photo (images.dup_of set)",
    "no_face": "no face found by the scan",
    "error": "the scan could not read the image",
    "not_scanned": "ingested but not scanned yet",
    "low_quality": "face below the quality bar (small, blurred, dark or turned away)",
    "pose": "head turned further than the pose filter's max_yaw (degrees from frontal, from the 5 landmarks)",
    "not_real_face": "the detector's face is not a photographed human face (drawing, painting, render, animal ...)",
    "not_main_face": "not the photo's main subject (bystander or background face)",
    "blocked": "every face in the photo belongs to a person who asked to be forgotten",
    "consent_unknown": "consent basis 'unknown'",
    "consent_expired": "consent expired",
    "scope_not_given": "the contributor did not tick the 'dataset' use (consented collection)",
    "no_label": "no value for the chosen label",
    "no_chip": "no aligned chip stored",
    "no_crop": "no aligned crop stored",
    "no_main_face": "no main face recorded for the photo",
    "no_split": "the person has no split yet (run `faceset split`)",
    "per_person_cap_or_balance": "over the per-person cap or removed by class balancing (assign_splits settings)",
    "other_split": "in another split than the one asked for",
}

_WHAT = {
    "crops": "one 224 px aligned face crop with margin per face (JPEG q95), cut from the scan's 5-point landmarks",
    "chips": "one 150 px tightly aligned face chip per face (PNG), as used by the dlib embedding network",
    "images": "whole photos (the workspace's clean stored copy: EXIF-oriented, metadata removed)",
}

_NONCOMMERCIAL = ("nc", "non-commercial", "noncommercial", "research")


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def _cross(counter: Counter, rows: list[str], splits: list[str], top: int = 40) -> list[list]:
    """Rows x splits with totals; past ``top`` values (e.g. ages) the rarest are folded into one row."""
    totals = Counter()
    for (r, _), v in counter.items():
        totals[r] += v
    keep = rows if len(rows) <= top else sorted(r for r, _ in totals.most_common(top))
    out = []
    for r in keep:
        vals = [counter[(r, s)] for s in splits]
        out.append([r, *vals, sum(vals)])
    rest = [r for r in rows if r not in set(keep)]
    if rest:
        vals = [sum(counter[(r, s)] for r in rest) for s in splits]
        out.append([f"({len(rest)} other values)", *vals, sum(vals)])
    return out


def render_datasheet(ws: Workspace, rep: ExportReport, sel: Selection, params: dict) -> str:
    items = sel.items
    c = ws.catalog
    splits = sorted({it.split for it in items}, key=split_order)
    n = len(items)
    by_cls = Counter((it.cls, it.split) for it in items)
    by_src = Counter((it.source, it.split) for it in items)
    by_lic = Counter(it.license for it in items)
    by_consent = Counter(it.consent for it in items)
    label_names = sorted({k for it in items for k in it.labels})
    people_split: dict[int, set[str]] = {}
    for it in items:
        if it.person_id is not None:
            people_split.setdefault(it.person_id, set()).add(it.split)
    leaking = sum(1 for s in people_split.values() if len(s) > 1)
    people_per_split = Counter(s for ss in people_split.values() for s in ss)
    images = len({it.image_id for it in items})
    label = params["label"]
    unit = "face" if params["what"] != "images" else "photo"

    src_rows = c.sources.for_datasheet()
    names = public_source_names(ws)
    exported_sources = {it.source for it in items}
    detectors = c.faces.detectors()
    rejected = list(c.images.rejected_by_reason().items())
    status = list(c.images.count_by_status().items())
    n_people = c.people.count()
    label_origins = c.labels.origins()
    licences = sorted(by_lic)
    nc = [x for x in licences if any(k in x.lower() for k in _NONCOMMERCIAL)]

    md = [f"# Datasheet: faceset export #{rep.export_id}", "",
          f"{n} {unit} records from {images} photos of {rep.people} people, format `{params['format']}`, "
          f"content `{params['what']}`, built {now()[:10]} by faceset. "
          "Structure follows Gebru et al., *Datasheets for Datasets*.", ""]

    md += ["## Motivation", "",
           "- **Purpose:** a consented, identity-aware face dataset"
           + (f" for classifying `{label}`" if label else "") + ", built from photo collections whose owner recorded "
           "a licence and a consent basis for each source.",
           "- **Created by:** the owner of the faceset workspace this was exported from (the same person is the "
           "contact for questions and erasure requests).",
           f"- **Classes:** {', '.join(f'`{k}` ({v})' for k, v in rep.classes.items())}"
           + ("" if label else f" (no label chosen: one class `{ALL_CLASS}`)") + ".", ""]

    md += ["## Composition", "",
           f"- **Instances:** {n} {unit}s ({params['what']}), {images} distinct photos, {rep.people} distinct people "
           f"(clusters of the face embeddings; {n_people} people in the whole workspace).",
           "- **Splits:** identity-disjoint by person: "
           f"{', '.join(f'{s} {sum(rep.splits[s].values())}' for s in splits)}. "
           f"People seen in more than one split: {leaking}.",
           f"- **People per split:** {', '.join(f'{s} {people_per_split[s]}' for s in splits)}.", "",
           f"### Records per class{f' (`{label}`)' if label else ''} and split", "",
           _table(["class", *splits, "total"], _cross(by_cls, sorted(rep.classes), splits)), ""]
    for name in label_names:
        cnt = Counter((it.labels[name], it.split) for it in items if name in it.labels)
        missing = sum(1 for it in items if name not in it.labels)
        md += [f"### Group counts: label `{name}`" + (f" ({missing} records without it)" if missing else ""), "",
               _table([name, *splits, "total"], _cross(cnt, sorted({v for v, _ in cnt}), splits)), ""]
    md += ["### Records per source and split", "",
           _table(["source", *splits, "total"], _cross(by_src, sorted({s for s, _ in by_src}), splits)), "",
           "### Left out of this export", "",
           _table(["reason", "records"], [[_REASONS.get(k, k), v] for k, v in sel.skipped.most_common()])
           if sel.skipped else "Nothing was left out.", "",
           "- **Confidential data:** faces are biometric personal data. Records carry salted hash ids and a salted "
           "person hash (not linkable across exports); no original file names, paths, EXIF or GPS.", ""]

    md += ["## Collection process", "",
           "Photos were added with `faceset ingest` from sources the owner declared; no scraping. "
           "Sources named after their folder or file appear as `source-<id>` (original names never leave). "
           "Per source (photos ingested / files rejected at ingest):", "",
           _table(["source", "kind", "licence", "consent basis", "consent expires", "added", "photos", "rejected",
                   "in this export"],
                  [[names[r.id], r.kind, r.license, r.consent, r.consent_expires or "-", r.created_at[:10],
                    r.images, r.rejected, "yes" if names[r.id] in exported_sources else "no"] for r in src_rows]),
           "", "Consent bases of the exported records: "
           + ", ".join(f"`{k}` {v}" for k, v in sorted(by_consent.items())) + ".", ""]
    if params["include_unknown_consent"]:
        md += [f"**Warning:** exported with `--include-unknown-consent`: {sel.included_unknown_consent} records have "
               "consent basis `unknown` and are included on the exporter's responsibility.", ""]
    else:
        md += [f"Records with consent basis `unknown` or an expired consent are left out "
               f"({sel.skipped.get('consent_unknown', 0)} unknown, "
               f"{sel.skipped.get('consent_expired', 0)} expired).", ""]
    from ..collect import datasheet_lines  # consented collection: campaigns, consent text hashes, scopes

    md += datasheet_lines(ws)
    if rejected:
        md += ["Files rejected at ingest: " + ", ".join(f"{r[0] or 'other'} {r[1]}" for r in rejected) + ".", ""]

    md += ["## Preprocessing, cleaning and labelling", "",
           f"- **Content:** {_WHAT[params['what']]}.",
           f"- **Detection and alignment:** detector(s) {', '.join(f'`{d}`' for d in detectors) or 'n/a'}; "
           "5-point landmarks; 128-D dlib ResNet embeddings for people clustering and duplicate detection "
           "(embeddings are not exported).",
           "- **Image status in the workspace:** " + ", ".join(f"{r[0]} {r[1]}" for r in status) + ".",
           "- **Cleaning:** exact and near-duplicates collapsed (one kept per group); non-face images rejected; "
           "low-quality faces "
           + ("INCLUDED on request" if params["include_low_quality"] else "left out") + "; "
           + (f"faces turned more than {params['max_yaw']:g} degrees from frontal left out (pose filter); "
              if params.get("max_yaw") is not None else "")
           + ("only each photo's main face" if params["faces"] == "main" else "every good face") + ".",
           "- **Privacy:** every image re-checked and re-encoded from pixels if it carried any metadata "
           "(EXIF, XMP, ICC, comments)"
           + (f"; {rep.blurred_faces} bystander faces blurred (pixelated + Gaussian)" if params["blur_bystanders"]
              else "") + ".",
           "- **Labels:** " + (", ".join(f"`{r[0]}` from {r[1]} ({r[2]} photos)" for r in label_origins) or "none")
           + ". Labels describe the photo's main subject and were not re-checked by faceset.", ""]

    md += ["## Uses", "",
           "- **Intended:** training and evaluating face-attribute classifiers"
           + (f" for `{label}`" if label else "") + " (e.g. `faceset train`), with per-group evaluation "
           "(`faceset evaluate --by ...`), using the identity-disjoint splits as given.",
           "- **Not intended:** identifying or tracking people, surveillance, inferring sensitive traits "
           "beyond the labels, or any use the licences below forbid.",
           "- **Known limits:** group sizes are uneven (see the group counts above); report metrics per group.",
           ("- **Licence limits:** " + ", ".join(f"`{x}`" for x in nc) + ": non-commercial / research use only.")
           if nc else "- **Licence limits:** see Distribution.", ""]

    md += ["## Distribution", "",
           f"- **Format:** `{params['format']}`" + _layout(params) + ".",
           "- **Licences of the exported records:** " + ", ".join(f"`{k}` {v}" for k, v in sorted(by_lic.items()))
           + ". Each record's licence is in the manifest; copyright stays with the photographers.",
           "- **Manifest:** `manifest.csv` / `manifest.jsonl`: id, file, split, label(s), person hash, source, "
           "licence, consent basis.",
           "- The owner's report (`faceset report`) and the workspace are never part of an export.", ""]

    md += ["## Maintenance", "",
           f"- **Export id:** {rep.export_id}, recorded in the workspace catalog with its parameters and items.",
           "- **Opt-out / erasure:** a person can ask to be removed; the owner runs "
           "`faceset forget SELFIE.jpg` (matches the person's face, erases every derived artefact and marks "
           "this export stale), then `faceset export --refresh` rebuilds it in place without them. "
           "Downstream copies must be replaced by the refreshed version.",
           "- **Updates:** re-run `faceset export` to the same folder; ids stay stable (same salt).", ""]
    return "\n".join(md)


def _layout(params: dict) -> str:
    return {
        "imagefolder": ": `<split>/<class>/<id>.<ext>`",
        "zip": f": `<class>_NNNN.zip` shards of {params['shard_size']} records plus `<class>_sample.zip` "
               f"(up to {params['sample']}); members `<split>/<class>/<id>.<ext>`",
        "webdataset": f": `<split>-NNNNNN.tar` shards of {params['shard_size']} samples (`<id>.<ext>`, `<id>.json`, "
                      "`<id>.cls`)",
        "parquet": ": `data/<split>-NNNNN.parquet` with Hugging Face features (`image`, ClassLabel `label`); "
                   "`datasets.load_dataset(\"parquet\", data_files={\"train\": \"data/train-*.parquet\", ...})`",
    }[params["format"]]
