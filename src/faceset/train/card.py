"""MODEL_CARD.md: what the model is for, what it saw, how it does per group, and its limits."""

from __future__ import annotations

from pathlib import Path


def write_card(path: Path, meta: dict, m: dict, split: str) -> Path:
    d = meta["data"]
    label = meta["label"]
    lines = [
        f"# Model card: `{label}` classifier ({meta['backbone']})",
        "",
        "## Intended use",
        f"Classify the `{label}` label of aligned face crops as the training data's source declared it, for",
        "dataset auditing, research and building balanced datasets. Not for decisions about individual people",
        "(access, hiring, policing, identity verification) and not for inferring anything a person has not declared.",
        "",
        "## Data",
        f"- source: {d['kind']} `{d['path']}`",
        "- dataset fingerprint: " + (f"sha256(datasheet.md) = `{d['datasheet_sha256']}`" if d.get("datasheet_sha256")
                                       else f"sha256(manifest of key, label, split) = `{d['manifest_sha256']}`"),
        f"- faces: train {d['n']['train']}, val {d['n']['val']}, test {d['n']['test']}; splits are identity-disjoint",
        f"- classes: {', '.join(meta['classes'])}",
        "",
        "## Training",
        f"- backbone `{meta['backbone']}` (weights shipped in packages, never downloaded), "
        + ("fine-tuned end to end" if meta.get("fine_tuned") else "frozen; cached bottleneck features"),
        f"- head: {'MLP ' + str(meta['head']['hidden']) if meta['head']['hidden'] else 'linear'}, class weights"
        + (f" x `{meta['head']['balance_by'].removesuffix('@13+')}` group weights"
           + (" over ages 13+ (younger faces pooled in one cell)" if meta['head']['balance_by'].endswith("@13+")
              else "") if meta['head'].get('balance_by') else "")
        + f", early stopping on val, seed {meta['seed']}; temperature {meta['temperature']:.3f} fitted on val",
        f"- preprocessing: {meta['preprocess']['input']}; mirror-image averaging at test time",
        "",
        f"## Metrics ({split} split)",
    ]
    if m:
        lo, hi = m["accuracy_ci95"]
        lines += [f"- accuracy {m['accuracy']:.4f} (95% CI {lo:.4f}-{hi:.4f}), balanced accuracy "
                  f"{m['balanced_accuracy']:.4f}, ECE {m['ece']:.4f}, n = {m['n']}", "",
                  "| class | precision | recall | support |", "|---|---|---|---|"]
        lines += [f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['support']} |"
                  for c, v in m["per_class"].items()]
        for col, g in m.get("groups", {}).items():
            if not g["per_group"]:
                continue
            lines += ["", f"Per `{col}` (worst-group gap {g['worst_gap'] * 100:.2f} points, worst `{g['worst']}`):", "",
                      f"| {col} | n | accuracy | 95% CI | ECE (calibration) |", "|---|---|---|---|---|"]
            lines += [f"| {k} | {v['n']} | {v['accuracy']:.4f} | {v['ci95'][0]:.4f}-{v['ci95'][1]:.4f} | "
                      f"{v.get('ece', float('nan')):.4f} |" for k, v in g["per_group"].items()]
        lines += _abstention_lines(m)
    else:
        lines.append("- no labelled faces in this split")
    lines += [
        "",
        "## What the label means",
        f"`{label}` is what the training data's source declared for each photo (a folder name, a file name, a form",
        "field), in that source's categories. It is never a person's identity, and a prediction is a guess about how",
        "the source would have annotated a similar-looking face, not a fact about the person in the photo.",
        "",
        "## Must not be used for",
        "- decisions about individual people: access, hiring, credit, insurance, policing, border control, identity",
        "  verification, or anything that treats the prediction as who someone is;",
        "- inferring or disclosing a person's gender identity, sex, ethnicity or any other attribute they have not",
        "  declared themselves; labelling people in photos published without their knowledge;",
        "- young children (accuracy near chance below 3 years, see the age table) and any group whose row above has",
        "  a wide confidence interval, unless `--min-confidence` abstention is used and its coverage is acceptable.",
        "",
        "## Limits",
        f"- The label is what the source declared (e.g. a file name or a form), not an identity: `{label}` as",
        "  annotated, in the categories the source used. People who do not fit those categories are misdescribed",
        "  by design.",
        "- Works on faces the detector finds and aligns; images with no detected face get no prediction.",
        "- Accuracy per group is only as good as the groups' sizes: read the confidence intervals, and re-evaluate",
        "  on data like yours (`faceset evaluate MODEL --data ... --by ...`) before relying on it.",
        "- Trained on one collection: photos from other cameras, ages, lighting or cultures may score lower.",
        "",
    ]
    from ..collect import card_lines_for  # consented collection: consent text hash, scopes, self-reported labels

    at = lines.index("## Training")
    lines[at:at] = card_lines_for(d.get("kind"), d.get("path"))
    p = path / "MODEL_CARD.md"
    p.write_text("\n".join(lines))
    return p


def _abstention_lines(m: dict) -> list[str]:
    """Coverage vs accuracy with abstention (predict --min-confidence), overall and per group at 95% coverage."""
    ab = m.get("abstention")
    if not ab:
        return []
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["", "### Abstention (`faceset predict --min-confidence T`)", "",
             "Faces below the calibrated confidence T get no label. Coverage = share of faces answered.", "",
             "| T | coverage | accuracy on answered |", "|---|---|---|"]
    lines += [f"| {r['threshold']:.2f} | {r['coverage']:.4f} | {fmt(r['accuracy'])} |" for r in ab["overall"]]
    for col, per in ab.get("by_group", {}).items():
        if not per:
            continue
        names = list(per)
        lines += ["", f"Per `{col}`: accuracy on answered / coverage at each T:", "",
                  "| T | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for i, r in enumerate(ab["overall"]):
            lines.append(f"| {r['threshold']:.2f} | " + " | ".join(
                f"{fmt(per[v][i]['accuracy'])} / {per[v][i]['coverage']:.3f}" for v in names) + " |")
    at = ab["at_coverage"]
    lines += ["", f"At T = {at['threshold']:.3f} ({at['coverage'] * 100:.1f}% of all faces answered; target "
              f"{at['coverage_target'] * 100:.0f}%), per group:"]
    for col, g in at["groups"].items():
        if not g["per_group"]:
            continue
        lines += ["", f"| {col} | n | coverage | accuracy on answered |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {v['coverage']:.4f} | {fmt(v['accuracy'])} |" for k, v in g["per_group"].items()]
        lines.append(f"| worst-group gap (points) | | | {g['worst_gap'] * 100:.2f} |")
    return lines
