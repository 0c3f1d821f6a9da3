"""People: cluster face embeddings into identities, incrementally, with stable ids.

Graph: each face links to its ``K`` nearest faces closer than ``THRESHOLD``
(weighted by closeness) and Chinese whispers clusters it. Incremental runs
cluster only the new faces plus the already-assigned faces within reach of
them; a cluster holding assigned faces takes their majority person, others
become new people. Assigned faces never move and ids never renumber, so a
person's split stays put; people that new faces link together are reported
as merge candidates, not merged. Memory is O(n * K) (blockwise exact kNN).

Why faces, not only centroids, as anchors: one person photographed over years
is several modes; a single mean sits between them. ``people.centroid`` (mean
of the person's 'ok' faces) is still maintained for other stages.

THRESHOLD was calibrated on ``identities/`` (leave-people-out; see
bench/people.py and docs/curate.md), not taken from dlib's 0.6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import now
from ..errors import UsageError
from ..progress import Bar, bar
from ..workspace import Workspace
from .graph import chinese_whispers, knn

THRESHOLD = 0.57
K = 30


def edge_weight(d: np.ndarray, threshold: float) -> np.ndarray:
    """Closer faces pull harder; still positive at the threshold. Unweighted links let one
    look-alike pair merge two people at 0.55 on identities/ (see bench)."""
    return 1.1 - d / threshold


def cluster_embeddings(emb: np.ndarray, threshold: float = THRESHOLD, k: int = K, seed: int = 0) -> np.ndarray:
    """Labels 0..m-1 for a fresh set of embeddings (what cluster_people does on a first run)."""
    return cluster_graph(emb, threshold, k, seed)


def _cluster(
    new: np.ndarray, old: np.ndarray, old_labels: np.ndarray, threshold: float, k: int, seed: int,
    merges: list | None = None,
    images: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    taken: list[tuple[int, int]] | None = None,
    progress: Bar | None = None,
) -> np.ndarray:
    """Labels for ``new`` rows: >= 0 is an existing label from ``old_labels``, < 0 a new cluster (-1, -2, ...).

    Chinese whispers runs unclamped on the new faces plus the old faces within
    reach of them; a resulting cluster that holds old faces takes their majority
    label (ties: the smaller, i.e. older, id), one without old faces becomes a
    new person. Clamping old faces instead lets a batch of new photos of a
    known person outvote a few old ones and start a duplicate person.
    A cluster holding several old labels is appended to ``merges`` (sorted
    label tuple): a merge proposal, never applied here. With ``images`` (image
    id per new face), ``priority`` (face quality) and ``taken`` ((label, image)
    of assigned faces), no person gets two faces of one photo.
    """
    n = len(new)
    if n == 0:
        return np.zeros(0, np.int64)
    if len(old):
        if progress:
            progress.total(2 * n)
        i, d = knn(new, old, k, on_rows=progress.advance if progress else None)
        near = np.unique(i[d < threshold])
    else:
        near = np.zeros(0, np.int64)
    if progress:  # progress counts query rows of both kNN passes
        progress.total((n if len(old) else 0) + n + len(near))
    nodes = np.concatenate([new, old[near]]) if len(near) else new
    lab = cluster_graph(nodes, threshold, k, seed, on_rows=progress.advance if progress else None)
    out = np.empty(n, np.int64)
    old_lab = old_labels[near]
    next_new = -1
    for c in np.unique(lab[:n]):  # clusters numbered by their first face, so new ids follow arrival order
        members = lab[:n] == c
        held = old_lab[lab[n:] == c]
        if len(held):
            vals, counts = np.unique(held, return_counts=True)
            out[members] = vals[np.argmax(counts)]  # np.unique sorts: ties go to the older id
            if len(vals) > 1 and merges is not None:
                merges.append(tuple(int(v) for v in vals))
        else:
            out[members] = next_new
            next_new -= 1
    if images is not None:
        out = _one_face_per_image(out, images, priority, taken or [], next_new)
    return out


def _one_face_per_image(out, images, priority, taken, next_new) -> np.ndarray:
    """Cannot-link: one person appears at most once per photo. Tiny, blurred faces in a crowd embed
    alike and chain a whole group shot into one 'person'; within each person the best face of a photo
    stays and the others become new people of their own."""
    used: dict[int, set] = {}
    for lab, img in taken:
        used.setdefault(lab, set()).add(img)
    out = out.copy()
    for i in np.lexsort((np.arange(len(out)), -priority)):  # best face first
        seen = used.setdefault(int(out[i]), set())
        if images[i] in seen:
            out[i] = next_new
            used[next_new] = {images[i]}
            next_new -= 1
        else:
            seen.add(images[i])
    return out


def cluster_graph(emb: np.ndarray, threshold: float, k: int, seed: int, on_rows=None) -> np.ndarray:
    """Chinese whispers on the kNN graph of ``emb`` (edges closer than ``threshold``); labels renumbered
    0.. in order of each cluster's first row."""
    n = len(emb)
    if n == 0:
        return np.zeros(0, np.int64)
    i, d = knn(emb, emb, k, exclude_self=True, on_rows=on_rows)
    src = np.repeat(np.arange(n), i.shape[1])
    keep = d.ravel() < threshold
    lab = chinese_whispers(n, src[keep], i.ravel()[keep], edge_weight(d.ravel()[keep], threshold), seed=seed)
    _, first, inv = np.unique(lab, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inv]


@dataclass
class PeopleReport:
    faces: int = 0  # faces with an embedding
    assigned_now: int = 0  # faces given a person in this run
    joined_existing: int = 0  # ... of which joined a person that existed before
    people: int = 0  # people with >= 1 face
    new_people: int = 0
    singletons: int = 0
    faces_per_person: dict[str, float] = field(default_factory=dict)  # min/median/mean/max
    dup_ties: int = 0  # duplicate images' faces moved to their kept image's person
    # people that new faces link together: proposals for review, never merged automatically
    # (a merge could join two splits or two consent records)
    merge_candidates: list[list[int]] = field(default_factory=list)
    threshold: float = THRESHOLD
    top: list[dict] = field(default_factory=list)  # largest people: id, faces, images, split

    def to_dict(self) -> dict:
        return asdict(self)


def cluster_people(ws: Workspace, *, threshold: float = THRESHOLD, seed: int = 0, progress: bool = True) -> PeopleReport:
    """Give every face with an embedding a person (bystanders too); keep existing assignments.

    Low-quality faces are assigned but neither anchor later faces nor move centroids.
    Faces of near-duplicate images follow their kept image's main face, so a
    duplicate group always belongs to one person (and so to one split).
    """
    if not 0 < threshold < 2:
        raise UsageError(f"threshold must be between 0 and 2 (a distance between unit embeddings), got {threshold:g}")
    c = ws.catalog
    rep = PeopleReport(threshold=threshold)
    faces = c.people.clustering_faces()
    ids, image, quality, emb, person = faces.ids, faces.image_ids, faces.quality, faces.vectors, faces.person_ids
    rep.faces = len(ids)
    is_new = person < 0
    anchors = ~is_new & faces.ok
    before = set(int(p) for p in person[~is_new])
    merges: list = []
    n_new = int(is_new.sum())
    # the kNN passes dominate: new faces against assigned ones, then the new + nearby graph
    with bar("people: neighbours", n_new, progress and n_new > 0) as b:
        labels = _cluster(emb[is_new], emb[anchors], person[anchors], threshold, K, seed, merges,
                          images=image[is_new], priority=quality[is_new],
                          taken=list(zip(person[~is_new].tolist(), image[~is_new].tolist())), progress=b)
    rep.merge_candidates = [list(m) for m in sorted(set(merges))]
    with c.tx():
        new_ids: dict[int, int] = {}
        person_of: dict[int, int] = {}
        ts = now()
        for fid, label in zip(ids[is_new], labels):
            if label < 0:
                if label not in new_ids:
                    new_ids[label] = c.people.create(created_at=ts)
                pid = new_ids[label]
            else:
                pid = int(label)
                rep.joined_existing += 1
            person_of[int(fid)] = pid
        rep.assigned_now, rep.new_people = c.people.assign(person_of), len(new_ids)
        rep.dup_ties = c.people.follow_kept_duplicates()
        _refresh_people(ws)
        c.audit("people", faces=rep.faces, assigned=rep.assigned_now, joined_existing=rep.joined_existing,
                new_people=rep.new_people, dup_ties=rep.dup_ties, merge_candidates=len(rep.merge_candidates),
                threshold=threshold, existing_people=len(before))
    sizes = np.array(c.people.face_counts(), np.int64)
    rep.people = len(sizes)
    rep.singletons = int((sizes == 1).sum())
    if len(sizes):
        rep.faces_per_person = {"min": int(sizes.min()), "median": float(np.median(sizes)),
                                "mean": round(float(sizes.mean()), 2), "max": int(sizes.max())}
    rep.top = [p._asdict() for p in c.people.summaries(largest_first=True, limit=20)]
    return rep


def _refresh_people(ws: Workspace) -> None:
    """n_faces and centroid (mean of 'ok' faces, all faces if none is ok) for every person."""
    ws.catalog.people.refresh_centroids()


def people_listing(ws: Workspace) -> dict:
    """Every face with its person id and where it came from: ``source_path`` (the original file;
    ``archive:member`` for archives and manifests), also split into ``source`` + ``path``
    (for `faceset people --json`)."""
    c = ws.catalog
    faces = c.faces.listing()
    originals = c.images.original_files({f["image_id"] for f in faces})
    for f in faces:
        first = originals.get(f["image_id"], [None])[0]
        f["source"], f["path"] = (first.uri, first.path) if first else (None, None)
        f["source_path"] = None if first is None else _source_path(first.kind, first.uri, first.path)
    return {"people": [p._asdict() for p in c.people.summaries()], "faces": faces}


def _source_path(kind: str, uri: str | None, path: str) -> str:
    """Where the user's own file is: folder/path, the file itself, or archive:member."""
    if kind == "folder":
        return str(Path(uri) / path)
    return uri if kind == "file" else f"{uri}:{path}"
