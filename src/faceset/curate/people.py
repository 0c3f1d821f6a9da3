"""People: cluster face embeddings into identities, incrementally, with stable ids, honouring review.

:func:`cluster_people` runs :func:`faceset.curate.cluster.cluster_incremental` (average linkage on the kNN
graph: two clusters merge only when the RMS distance over ALL their cross pairs is below the threshold, so
look-alike chains cannot glue strangers together; see that module). New faces join an existing person or
form new ones; assigned faces never move and ids never renumber, so a person's split stays put; two
existing people that new faces would join are reported as ``merge_candidates``, never merged.

Constraints: one face per photo per person (cannot-links between faces of one photo, plus a final check
against every assigned face), and the human decisions of review (``decisions`` table): must-link and
cannot-link pairs go to the algorithm, ``not_a_person`` faces never get a person. The default threshold is
``cluster.DEFAULT`` (chosen by person-disjoint CV on identities_wild, bench/identity_cv.py).

Low-quality faces are assigned but never anchor later faces (existing people are compared on their 'ok'
faces). ``people.centroid`` (mean of the person's 'ok' faces) is still maintained for other stages.

The Chinese-whispers functions below (:func:`cluster_embeddings`, :func:`_cluster`) are the previous
algorithm, kept for the benchmarks' side-by-side numbers (``CW_THRESHOLD``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..catalog import now
from ..errors import UsageError
from ..index import EXACT_BELOW
from ..progress import Bar, bar
from ..workspace import Workspace
from .cluster import DEFAULT, Params, cluster_incremental
from .graph import chinese_whispers, knn

THRESHOLD = DEFAULT.threshold  # what `faceset people` uses (RMS cross-pair distance, cluster.py)
CW_THRESHOLD = 0.57  # the previous Chinese-whispers edge threshold (cluster_embeddings, _cluster)
K = 30
MAX_CANDIDATES = 200  # merge candidates listed in the report (all are counted in merge_candidates_total)


def edge_weight(d: np.ndarray, threshold: float) -> np.ndarray:
    """Closer faces pull harder; still positive at the threshold. Unweighted links let one
    look-alike pair merge two people at 0.55 on identities/ (see bench)."""
    return 1.1 - d / threshold


def cluster_embeddings(emb: np.ndarray, threshold: float = CW_THRESHOLD, k: int = K, seed: int = 0) -> np.ndarray:
    """Labels 0..m-1 for a fresh set of embeddings with the previous algorithm (Chinese whispers)."""
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
    merge_candidates: list[list[int]] = field(default_factory=list)  # the MAX_CANDIDATES closest pairs
    merge_candidates_total: int = 0
    threshold: float = THRESHOLD
    not_a_person: int = 0  # faces review marked as no person: never given one
    constraints: dict[str, int] = field(default_factory=dict)  # must_link / cannot_link pairs that applied
    top: list[dict] = field(default_factory=list)  # largest people: id, faces, images, split

    def to_dict(self) -> dict:
        return asdict(self)


def _params(threshold: float | None, params: Params | None) -> Params:
    p = params or DEFAULT
    if threshold is None:
        return p
    if not 0 < threshold < 2:
        raise UsageError(f"threshold must be between 0 and 2 (a distance between unit embeddings), got {threshold:g}")
    return p.with_(threshold=float(threshold))


def _same_photo_pairs(new_images: np.ndarray, old_images: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Cannot-link rows (new first, old at n + j) that are faces of one photo: a person appears at most once
    per photo (tiny, blurred crowd faces embed alike and would otherwise gather into one person)."""
    rows: dict[int, list[int]] = {}
    for i, img in enumerate(new_images.tolist()):
        rows.setdefault(img, []).append(i)
    old_rows: dict[int, list[int]] = {}
    for j, img in enumerate(old_images.tolist()):
        if img in rows:
            old_rows.setdefault(img, []).append(n + j)
    out: list[tuple[int, int]] = []
    for img, r in rows.items():
        o = old_rows.get(img, [])
        for k, a in enumerate(r):
            out += [(a, b) for b in r[k + 1:]]
            out += [(a, b) for b in o]
    return out


def cluster_people(ws: Workspace, *, threshold: float | None = None, params: Params | None = None, seed: int = 0,
                   progress: bool = True) -> PeopleReport:
    """Give every face with an embedding a person (bystanders too); keep existing assignments.

    ``threshold`` overrides ``params.threshold`` (default :data:`cluster.DEFAULT`). ``seed`` is kept for
    callers of the previous algorithm; average linkage is deterministic.
    Low-quality faces are assigned but never anchor later faces nor move centroids. Faces of near-duplicate
    images follow their kept image's main face, so a duplicate group always belongs to one person (and so
    to one split). Review decisions hold: must-link / cannot-link pairs constrain the clustering, and faces
    marked not-a-person are left without a person.
    """
    p = _params(threshold, params)
    c = ws.catalog
    rep = PeopleReport(threshold=p.threshold)
    faces, ix = _clustering_input(ws)
    ids, image, quality, emb, person = faces.ids, faces.image_ids, faces.quality, faces.vectors, faces.person_ids
    rep.faces = len(ids)
    nap = c.review.not_a_person_faces()
    excluded = np.isin(ids, np.fromiter(nap, np.int64, len(nap))) if nap else np.zeros(len(ids), bool)
    rep.not_a_person = int(excluded.sum())
    is_new = (person < 0) & ~excluded
    anchors = (person >= 0) & faces.ok & ~excluded
    assigned = (person >= 0) & ~excluded
    before = set(int(x) for x in person[assigned])
    n_new = int(is_new.sum())
    new_idx, old_idx = np.flatnonzero(is_new), np.flatnonzero(anchors)
    # row of each face in the algorithm's [new; old] numbering
    row = {int(ids[k]): i for i, k in enumerate(new_idx)}
    row.update({int(ids[k]): n_new + j for j, k in enumerate(old_idx)})
    must_f, cannot_f = c.review.link_decisions()
    must = [(row[a], row[b]) for a, b in must_f if a in row and b in row and (row[a] < n_new or row[b] < n_new)]
    cannot = [(row[a], row[b]) for a, b in cannot_f if a in row and b in row and (row[a] < n_new or row[b] < n_new)]
    rep.constraints = {"must_link": len(must), "cannot_link": len(cannot)}
    cannot += _same_photo_pairs(image[new_idx], image[old_idx], n_new)
    labels = np.zeros(0, np.int64)
    merges: list = []
    with bar("people: clustering", 1, progress and n_new > 0) as b:
        if n_new:
            res = cluster_incremental(emb[new_idx], emb[old_idx], person[old_idx], quality=quality[new_idx],
                                      must_link=must, cannot_link=cannot, params=p, index=ix,
                                      new_ids=ids[new_idx], old_ids=ids[old_idx])
            labels, merges = res.labels, res.proposals
            # safety net: no person twice in one photo, also against assigned low-quality faces
            next_new = int(min(labels.min(initial=0), 0)) - 1
            labels = _one_face_per_image(labels, image[new_idx], quality[new_idx],
                                         list(zip(person[assigned].tolist(), image[assigned].tolist())), next_new)
        b.advance()
    if ix is not None:  # derived (cache/vectors): the next run adds only the new faces to it
        from ..vectors import save_face_index

        save_face_index(ws, ix)
    best: dict[tuple[int, int], float] = {}
    for a, b_, l in merges:
        k = (min(int(a), int(b_)), max(int(a), int(b_)))
        best[k] = min(best.get(k, np.inf), float(l))
    # the closest pairs first, a bounded list: after the crowd split, look-alike pieces propose each other
    # by the thousand, and a curator reads the top of the list (`people review` ranks questions itself)
    rep.merge_candidates_total = len(best)
    rep.merge_candidates = [list(k) for k, _ in sorted(best.items(), key=lambda kv: (kv[1], kv[0]))[:MAX_CANDIDATES]]
    with c.tx():
        new_ids: dict[int, int] = {}
        person_of: dict[int, int] = {}
        ts = now()
        for fid, label in zip(ids[new_idx], labels):
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
                new_people=rep.new_people, dup_ties=rep.dup_ties, merge_candidates=rep.merge_candidates_total,
                threshold=p.threshold, existing_people=len(before), not_a_person=rep.not_a_person,
                must_link=rep.constraints["must_link"], cannot_link=rep.constraints["cannot_link"])
    sizes = np.array(c.people.face_counts(), np.int64)
    rep.people = len(sizes)
    rep.singletons = int((sizes == 1).sum())
    if len(sizes):
        rep.faces_per_person = {"min": int(sizes.min()), "median": float(np.median(sizes)),
                                "mean": round(float(sizes.mean()), 2), "max": int(sizes.max())}
    rep.top = [p_._asdict() for p_ in c.people.summaries(largest_first=True, limit=20)]
    return rep


def _clustering_input(ws: Workspace):
    """(faces, index): below ``vectors.SIDECAR_FROM`` embedded faces, one catalog query and no index (exact
    kNN, as always); from there the metadata in keyset pages, the vectors from the memory-mapped sidecar and
    the workspace's ANN index (``vectors.face_index``), so a million faces are never one giant query."""
    from .. import vectors as V

    c = ws.catalog
    if c.faces.embedding_fingerprint().count < V.SIDECAR_FROM:
        return c.people.clustering_faces(), None
    v = V.sync(ws)
    faces = c.people.clustering_faces_chunked(lambda fids: V.read_vectors(ws, fids))
    return faces, V.face_index(ws, v)


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


# -- assisted review -------------------------------------------------------------------------------------------


@dataclass
class ReviewQuestion:
    """"Same person?" about two faces, ranked by how many face pairs the answer is expected to fix."""

    face_a: int
    face_b: int
    person_a: int
    person_b: int
    image_a: int
    image_b: int
    kind: str  # move (face a may be b's person) | merge (two people that may be one) | split (a off its person)
    #            | cluster (is person a, shown as ``faces``, one person? a and b: its central and farthest face)
    gain: float  # expected face pairs fixed by the answer
    linkage: float  # RMS distance between the two sides (cluster: RMS pairwise distance inside)
    faces: list = field(default_factory=list)  # cluster: the person's faces (at most CLUSTER_SHEET), central first

    def to_dict(self) -> dict:
        return asdict(self)


_GRAPHS: dict[str, tuple[bytes, tuple]] = {}  # workspace root -> (faces key, graph), see _review_graph


def _review_graph(ws: Workspace, fids: np.ndarray, emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """kNN of the review faces (rows of ``person_vectors``) through the workspace's ANN index: the exact graph of
    100k faces took 80 s per question list. The graph depends only on which faces there are, not on who is who,
    so answers reuse it (kept per workspace for the process; the review page asks again after every answer).
    Rows a short answer lacks point at themselves, far beyond every bound."""
    import hashlib

    from .. import vectors as V
    from ..index import knn_graph

    h = hashlib.blake2b(np.ascontiguousarray(fids), digest_size=16)
    h.update(np.ascontiguousarray(emb))  # no 51 MB concatenated copy at 100k faces
    key = h.digest()
    hit = _GRAPHS.get(str(ws.root))
    if hit is not None and hit[0] == key:
        return hit[1]
    ix = V.face_index(ws)
    o = np.argsort(fids, kind="stable")  # knn_graph wants ascending ids
    gi, gd = knn_graph(np.ascontiguousarray(emb[o]), min(k, len(fids) - 1), index=ix, ids=fids[o])
    if ix is not None:
        V.save_face_index(ws, ix)  # derived (cache/vectors): the next process loads it instead of building it
    pad = gi < 0
    gi = np.where(pad, np.arange(len(o))[:, None], gi)
    nbr, dist = np.empty_like(gi), np.empty_like(gd)
    nbr[o], dist[o] = o[gi], np.where(pad, 9.0, gd)
    _GRAPHS[str(ws.root)] = (key, (nbr, dist))
    return nbr, dist


def review_questions(ws: Workspace, limit: int = 10, *, params: Params | None = None) -> list[ReviewQuestion]:
    """Up to ``limit`` yes/no questions (:func:`faceset.curate.review.questions` over the 'ok' assigned
    faces), best expected gain first; pairs a decision already settles are not asked again."""
    from . import review as R

    if limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    p = params or DEFAULT
    c = ws.catalog
    fids, pids, emb = c.review.person_vectors()
    if len(fids) < 2:
        return []
    row = {int(f): i for i, f in enumerate(fids)}
    must_f, cannot_f = c.review.link_decisions()
    ans = R.Answers(must_link=[(row[a], row[b]) for a, b in must_f if a in row and b in row],
                    cannot_link=[(row[a], row[b]) for a, b in cannot_f if a in row and b in row])
    # ask for more than needed: merge questions between people who share a photo are dropped below
    graph = _review_graph(ws, fids, emb, p.k) if len(fids) >= EXACT_BELOW else None
    qs = R.questions(emb, pids, limit=2 * limit + 10, params=p, answers=ans, graph=graph)
    faces = c.people.clustering_faces()
    photos: dict[int, set] = {}
    for pid, img in zip(faces.person_ids.tolist(), faces.image_ids.tolist()):
        if pid >= 0:
            photos.setdefault(pid, set()).add(img)
    images = {r.face_id: r.image_id for r in c.faces.in_images(int(fids[i]) for q in qs for i in (q.a, q.b))}
    out = []
    for q in qs:
        a, b, pa, pb = int(fids[q.a]), int(fids[q.b]), int(pids[q.a]), int(pids[q.b])
        if q.kind == "merge" and photos.get(pa, set()) & photos.get(pb, set()):
            continue  # one person appears once per photo: these two cannot be one
        if q.kind == "move" and images[a] in photos.get(pb, set()):
            continue  # b's person is already in a's photo
        members = []
        if q.kind == "cluster":
            mem = np.flatnonzero(pids == pids[q.a])
            mem = mem[np.argsort(((emb[mem] - emb[mem].mean(0)) ** 2).sum(1), kind="stable")]
            members = [int(fids[i]) for i in mem[:CLUSTER_SHEET]]
        out.append(ReviewQuestion(a, b, pa, pb, images[a], images[b], q.kind, round(q.gain, 3), round(q.linkage, 4),
                                  members))
    return out[:limit]


CLUSTER_SHEET = 16  # faces of a person shown for a cluster question


def answer(ws: Workspace, a: int, b: int, same: bool, kind: str | None = None):
    """Apply one answer about faces ``a`` and ``b`` as a review decision (:mod:`faceset.curate.decisions`):
    same -> for a ``move`` question face ``a`` moves to ``b``'s person, for a ``merge`` their people merge
    (a must-link alone when they already share a person); not the same -> face ``a`` is split off its person
    when they share one (cannot-link), else a cannot-link between the two faces keeps them apart in every
    later run. A ``cluster`` question ("is this person one person?", a and b its central and farthest face):
    yes pins it (a must-link from a to each of its faces), no splits it into :func:`review.split_pieces`
    (each piece but the largest becomes a new person). ``kind`` None: the kind of the question currently
    asked about (a, b) (``merge``, or ``split`` for two faces of one person, if none is).
    Returns the verb's ``DecisionReport``."""
    from . import decisions as D

    a, b = int(a), int(b)
    if a == b:
        raise UsageError("a question is about two different faces")
    c = ws.catalog
    person_of = c.review.persons_of_faces([a, b])
    missing = [f for f in (a, b) if f not in person_of]
    if missing:
        from ..errors import NotFound

        raise NotFound(f"no face {', '.join(map(str, missing))}")
    pa, pb = person_of[a], person_of[b]
    if pa is None or pb is None:
        raise UsageError("both faces need a person (run `faceset people` first; not-a-person faces have none)")
    if kind is None and pa == pb:
        kind = next((q.kind for q in review_questions(ws, 100) if (q.face_a, q.face_b) == (a, b)), "split")
    if kind == "cluster":
        if pa != pb:
            raise UsageError("a cluster question is about two faces of one person")
        return _answer_cluster(ws, a, pa, same)
    if same and pa != pb:
        if kind is None:
            kind = next((q.kind for q in review_questions(ws, 100) if (q.face_a, q.face_b) == (a, b)), "merge")
        if kind == "move":
            return D.split_faces(ws, [a], into=pb)
        keep, other = (pa, pb) if _size(ws, pa) >= _size(ws, pb) else (pb, pa)
        return D.merge_people(ws, keep, [other])
    if not same and pa == pb:
        return D.split_faces(ws, [a])
    kind = "must_link" if same else "cannot_link"
    with c.tx():
        n = c.review.add_decisions(kind, [(a, b)])
        c.audit("people_review", decision=kind, decisions=n)
    return D.DecisionReport(kind, person_id=pa if same else None, people=sorted({pa, pb}), faces=0, decisions=n)


def _answer_cluster(ws: Workspace, a: int, person: int, same: bool):
    """Yes: must-links from face ``a`` to every other face of ``person``; no: the person split into pieces."""
    from . import decisions as D
    from . import review as R

    c = ws.catalog
    fids, pids, emb = c.review.person_vectors()
    m = pids == person
    members = fids[m]
    if same:
        with c.tx():
            n = c.review.add_decisions("must_link", [(a, int(f)) for f in members if int(f) != a])
            c.audit("people_review", decision="cluster_yes", decisions=n)
        return D.DecisionReport("must_link", person_id=person, people=[person], faces=0, decisions=n)
    pieces = R.split_pieces(emb[m], DEFAULT)
    keep = int(np.bincount(pieces).argmax())
    new, n_dec, moved = [], 0, 0
    for k in range(int(pieces.max()) + 1):
        if k != keep:
            rep = D.split_faces(ws, [int(f) for f in members[pieces == k]])
            new.append(rep.person_id)
            n_dec, moved = n_dec + rep.decisions, moved + rep.faces
    return D.DecisionReport("split", person_id=person, people=[person, *new], faces=moved, decisions=n_dec,
                            details={"pieces": int(pieces.max()) + 1})


def _size(ws: Workspace, person_id: int) -> int:
    card = ws.catalog.review.person(person_id)
    return card.n_faces if card else 0


def review_sheet(ws: Workspace, questions: list[ReviewQuestion], out: Path, cell: int = 150) -> Path | None:
    """One row per question: the two faces' chips side by side, numbered as the CLI lists them; a cluster
    question's row shows the person's faces (:data:`CLUSTER_SHEET` at most, central first) in two rows of
    half-size chips."""
    from PIL import Image, ImageDraw

    if not questions:
        return None
    import io

    keys = ws.catalog.faces.chip_keys(f for q in questions for f in (q.face_a, q.face_b, *q.faces))
    half, per_row = cell // 2, (CLUSTER_SHEET + 1) // 2
    width = max(2 * cell + 10, per_row * half) if any(q.kind == "cluster" for q in questions) else 2 * cell + 10
    sheet = Image.new("RGB", (width, len(questions) * (cell + 16)), "white")
    draw = ImageDraw.Draw(sheet)

    def paste(fid, size, xy):
        key = keys.get(fid)
        if key and ws.store.exists(key):
            with Image.open(io.BytesIO(ws.store.get(key))) as im:
                sheet.paste(im.convert("RGB").resize((size, size)), xy)

    for k, q in enumerate(questions):
        y = k * (cell + 16)
        if q.kind == "cluster":
            for j, fid in enumerate(q.faces[:CLUSTER_SHEET]):
                paste(fid, half, ((j % per_row) * half, y + (j // per_row) * half))
            draw.text((3, y + cell + 2), f"{k + 1}: person {q.person_a} one person? ({len(q.faces)} faces shown)",
                      fill="black")
            continue
        for col, fid in enumerate((q.face_a, q.face_b)):
            paste(fid, cell, (col * (cell + 10), y))
        draw.text((3, y + cell + 2), f"{k + 1}: faces {q.face_a} / {q.face_b}  {q.kind} {q.linkage:.2f}",
                  fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
    return out
