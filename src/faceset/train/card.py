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
        f"- backbone `{meta['backbone']}` (ImageNet weights shipped in packages), "
        + ("fine-tuned end to end" if meta.get("fine_tuned") else "frozen; cached bottleneck features"),
        f"- head: {'MLP ' + str(meta['head']['hidden']) if meta['head']['hidden'] else 'linear'}, class weights"
        + (f" x `{meta['head']['balance_by']}` group weights" if meta['head'].get('balance_by') else "")
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
        lines += [f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['support']} |" for c, v in m["per_class"].items()]
        for col, g in m.get("groups", {}).items():
            if not g["per_group"]:
                continue
            lines += ["", f"Per `{col}` (worst-group gap {g['worst_gap'] * 100:.2f} points, worst `{g['worst']}`):", "",
                      f"| {col} | n | accuracy | 95% CI |", "|---|---|---|---|"]
            lines += [f"| {k} | {v['n']} | {v['accuracy']:.4f} | {v['ci95'][0]:.4f}-{v['ci95'][1]:.4f} |"
                      for k, v in g["per_group"].items()]
    else:
        lines.append("- no labelled faces in this split")
    lines += [
        "",
        "## Limits",
        f"- The label is what the source declared (e.g. a file name or a form), not an identity: `{label}` as",
        "  annotated, in the categories the source used. People who do not fit those categories are misdescribed by design.",
        "- Works on faces the detector finds and aligns; images with no detected face get no prediction.",
        "- Accuracy per group is only as good as the groups' sizes: read the confidence intervals, and re-evaluate",
        "  on data like yours (`faceset evaluate MODEL --data ... --by ...`) before relying on it.",
        "- Trained on one collection: photos from other cameras, ages, lighting or cultures may score lower.",
        "",
    ]
    p = path / "MODEL_CARD.md"
    p.write_text("\n".join(lines))
    return p
