"""The review app: server-rendered pages over one workspace; every change goes through the library verbs.

Pages are bookmarkable URLs with their filters in the query string; lists page by keyset (``after=``).
Images and faces are served by id from the store only (no path parameter reaches the file system);
original file names appear only in the owner's view (image page, rejected files), never in a URL or a log line.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import imageio
from ..curate import decisions as verbs
from ..errors import FacesetError, NotFound
from ..workspace import Workspace
from .doubt import Doubt
from .security import AUTH_COOKIE, HEADERS, OPEN_PATHS, SID_COOKIE, Guard, new_sid
from .thumbs import Thumbs, content_type

HERE = Path(__file__).resolve().parent
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # one selfie upload (all files together)
MAX_SELFIES = 8
PAGE_IMAGES = 60
PAGE_PEOPLE = 48
PAGE_FACES = 120
PAGE_REJECTED = 100
FORGET_TTL_S = 1800
REVIEW_LIMIT, REVIEW_MAX = 10, 100  # questions on the review page (default, most)
REVIEW_KINDS = ("move", "merge", "split", "cluster")


class TooLarge(Exception):
    pass


def _review(ws: Workspace):
    r = getattr(ws.catalog, "review", None)
    if r is None:  # until the catalog wires it
        from ..catalog.review import Review

        r = Review(ws.catalog)
    return r


def _int(v: Any, what: str, *, default: int | None = None) -> int | None:
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise HTTPException(400, f"{what} must be a number") from None
    if n < 0:
        raise HTTPException(400, f"{what} must not be negative")
    return n


class ForgetRequest:
    def __init__(self, selfies: list, report):
        self.selfies = selfies  # decoded RGB arrays, in memory only
        self.report = report
        self.created = time.time()


def create_app(ws: Workspace, *, token: str | None = None, owner_token: str | None = None,
               allowed_hosts: set[str] | None = None, max_upload: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The ASGI app over ``ws`` (see :mod:`faceset.serve.security` for ``token`` / ``allowed_hosts``)."""
    app = FastAPI(title="faceset review", docs_url=None, redoc_url=None, openapi_url=None)
    guard = Guard(token=token, owner_token=owner_token, allowed_hosts=allowed_hosts)
    rv = _review(ws)
    thumbs = Thumbs(ws)
    doubt = Doubt(rv)
    forget_requests: dict[str, ForgetRequest] = {}
    forget_lock = threading.Lock()
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_compact"] = lambda v: json.dumps(v, sort_keys=True, default=str)
    app.state.ws, app.state.guard, app.state.forget = ws, guard, forget_requests
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    memo: dict[str, tuple[float, Any]] = {}

    def cached(key: str, fn, ttl: float = 15.0):
        """Small whole-workspace summaries (filter choices) for ``ttl`` seconds: not worth a GROUP BY per view."""
        hit = memo.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        val = fn()
        memo[key] = (time.monotonic(), val)
        return val

    def _grid_filters():
        labels = ws.catalog.labels.value_counts()
        choices = [f"{n}:{v}" for n, vals in labels.items() for v in list(vals)[:200]][:2000]
        return choices, ws.catalog.images.rejected_by_reason()

    # -- plumbing ---------------------------------------------------------------------------------------
    @app.middleware("http")
    async def protect(request: Request, call_next):
        path = request.url.path
        if not guard.host_ok(request.headers.get("host")):
            resp: Response = JSONResponse({"error": "unexpected Host header"}, status_code=421)
        elif request.method not in ("GET", "HEAD", "POST"):
            resp = JSONResponse({"error": "method not allowed"}, status_code=405)
        else:
            role = guard.role(request.cookies.get(AUTH_COOKIE))
            length = request.headers.get("content-length")
            if request.method == "POST" and length is not None and (not length.isdigit()
                                                                  or int(length) > max_upload + 65536):
                resp = JSONResponse({"error": f"request body over the {max_upload:,} byte limit"},
                                    status_code=413)
            elif role is None and not any(path == p or path.startswith(p) for p in OPEN_PATHS):
                if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                    resp = RedirectResponse("/login", status_code=303)
                else:
                    resp = JSONResponse({"error": "login required (token)"}, status_code=401)
            else:
                origin = request.headers.get("origin")
                host = request.headers.get("host", "")
                if request.method == "POST" and origin and origin != "null" and origin.split("://", 1)[-1] != host:
                    resp = JSONResponse({"error": "cross-site request refused"}, status_code=403)
                else:
                    request.state.role = role
                    request.state.new_sid = None
                    sid = request.cookies.get(SID_COOKIE)
                    if not sid or len(sid) > 64:
                        sid = new_sid()
                        request.state.new_sid = sid
                    request.state.sid = sid
                    resp = await call_next(request)
                    if request.state.new_sid:
                        resp.set_cookie(SID_COOKIE, sid, httponly=True, samesite="strict", path="/")
        for k, v in HEADERS.items():
            resp.headers[k] = v
        if "cache-control" not in resp.headers:
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.exception_handler(FacesetError)
    async def facesets_errors(request: Request, exc: FacesetError):
        code = 404 if isinstance(exc, NotFound) else 400
        return _error(request, code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_errors(request: Request, exc: HTTPException):
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge):
        return _error(request, 413, str(exc))

    def _error(request: Request, code: int, msg: str) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(render(request, "error.html", code=code, message=msg), status_code=code)
        return JSONResponse({"error": msg}, status_code=code)

    def render(request: Request, name: str, **ctx) -> str:
        sid = getattr(request.state, "sid", None) or ""
        return env.get_template(name).render(
            csrf=guard.csrf_for(sid) if sid else "", owner=getattr(request.state, "role", None) == "owner",
            logged_in=guard.token is not None, path=request.url.path, q=request.query_params,
            msg=request.query_params.get("msg"), qs=_qs, **ctx)

    def page(request: Request, name: str, **ctx) -> HTMLResponse:
        return HTMLResponse(render(request, name, **ctx))

    async def posted(request: Request, *, files: bool = False) -> Any:
        """The form of a POST, once its CSRF token checks out."""
        try:
            form = await request.form(max_files=MAX_SELFIES if files else 0, max_fields=5000,
                                      max_part_size=max_upload)
        except HTTPException:
            raise
        except Exception as e:  # malformed multipart, too many parts, part too large
            raise HTTPException(400, f"malformed form: {type(e).__name__}") from None
        given = form.get("csrf") or request.headers.get("x-csrf-token")
        if not guard.csrf_ok(getattr(request.state, "sid", None), given):
            raise HTTPException(403, "missing or wrong CSRF token (reload the page)")
        return form

    def done(url: str, msg: str) -> RedirectResponse:
        doubt.invalidate()  # who-is-who may have changed
        sep = "&" if "?" in url else "?"
        return RedirectResponse(f"{url}{sep}{urlencode({'msg': msg})}", status_code=303)

    # -- login ------------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return page(request, "login.html", title="log in")

    @app.post("/login")
    async def login(request: Request):
        form = await posted(request)
        cookie = guard.login_cookie(str(form.get("token") or ""))
        if guard.token is None:
            return RedirectResponse("/", status_code=303)
        if cookie is None:
            time.sleep(0.2)
            return _error(request, 401, "wrong token")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(AUTH_COOKIE, cookie, httponly=True, samesite="strict", path="/")
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        await posted(request)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(AUTH_COOKIE, path="/")
        return resp

    # -- media: by id, from the store only ----------------------------------------------------------------
    media_headers = {"Cache-Control": "private, max-age=300"}

    @app.get("/thumb/image/{image_id}")
    def thumb_image(image_id: int):
        key = rv.store_key_of_image(image_id)
        if key is None or not ws.store.exists(key):
            raise HTTPException(404, "no such image")
        return Response(thumbs.get(key), media_type="image/jpeg", headers=media_headers)

    @app.get("/thumb/face/{face_id}")
    def thumb_face(face_id: int):
        key = rv.chip_key_of_face(face_id)
        if key and ws.store.exists(key):
            data = ws.store.get(key)
            return Response(data, media_type=content_type(data), headers=media_headers)
        where = rv.face_image(face_id)
        if where is None:
            raise HTTPException(404, "no such face")
        ikey = rv.store_key_of_image(where[0])
        if not ikey or not ws.store.exists(ikey):
            raise HTTPException(404, "no such face")
        return Response(thumbs.face_crop(ikey, where[1]), media_type="image/jpeg", headers=media_headers)

    @app.get("/media/image/{image_id}")
    def media_image(image_id: int):
        key = rv.store_key_of_image(image_id)
        if key is None or not ws.store.exists(key):
            raise HTTPException(404, "no such image")
        data = ws.store.get(key)
        return Response(data, media_type=content_type(data), headers=media_headers)

    # -- overview ---------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request):
        from ..status import workspace_status

        s = workspace_status(ws)
        sizes = ws.catalog.people.face_counts()
        buckets = [("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10), ("11-30", 11, 30), ("31+", 31, 10 ** 9)]
        size_hist = {name: sum(1 for n in sizes if lo <= n <= hi) for name, lo, hi in buckets}
        return page(request, "overview.html", title="overview", s=s, size_hist=size_hist,
                    decisions=rv.decision_counts(), dup_groups=rv.dup_group_count(),
                    exports=rv.exports_list()[:5])

    # -- images -----------------------------------------------------------------------------------------
    @app.get("/images", response_class=HTMLResponse)
    def images(request: Request, status: str = "", source: str = "", label: str = "", split: str = "",
               person: str = "", after: str = ""):
        from ..catalog.review import IMAGE_FILTERS

        if status and status not in IMAGE_FILTERS:
            raise HTTPException(400, f"status must be one of {', '.join(IMAGE_FILTERS)}")
        if split and split not in ("train", "val", "test"):
            raise HTTPException(400, "split must be train, val or test")
        lab = None
        if label:
            if ":" not in label:
                raise HTTPException(400, "label filter is name:value")
            lab = tuple(label.split(":", 1))
        tiles = rv.images_page(after=_int(after, "after", default=0), limit=PAGE_IMAGES, status=status or None,
                               source_id=_int(source, "source"), label=lab, split=split or None,
                               person_id=_int(person, "person"))
        boxes = rv.boxes_of([t.id for t in tiles])
        filters = {k: v for k, v in dict(status=status, source=source, label=label, split=split,
                                         person=person).items() if v}
        nxt = _qs(dict(filters, after=tiles[-1].id)) if len(tiles) == PAGE_IMAGES else None
        label_choices, rejected = cached("grid-filters", _grid_filters)
        return page(request, "images.html", title="images", tiles=tiles, boxes=boxes, filters=filters,
                    next_qs=nxt, first_qs=_qs(filters), sources=rv.source_choices(), statuses=IMAGE_FILTERS,
                    label_choices=label_choices, rejected=rejected)

    @app.get("/image/{image_id}", response_class=HTMLResponse)
    def image_page(request: Request, image_id: int):
        im = rv.image(image_id)
        if im is None:
            raise HTTPException(404, "no such image")
        faces = rv.image_face_details(image_id)
        owner = getattr(request.state, "role", None) == "owner"
        paths = []
        if owner:
            from ..privacy.forget import original_path

            paths = [(original_path(p.kind, p.uri, p.path), p.outcome) for p in rv.original_paths(image_id)]
        group = rv.dup_group_of(image_id)
        return page(request, "image.html", title=f"image {image_id}", im=im, faces=faces,
                    labels=rv.labels_of(image_id), paths=paths, group=group)

    # -- people -----------------------------------------------------------------------------------------
    @app.get("/people", response_class=HTMLResponse)
    def people(request: Request, sort: str = "size", after: str = ""):
        if sort not in ("size", "doubt"):
            raise HTTPException(400, "sort is size or doubt")
        nxt = None
        scores: dict[int, float] = {}
        if sort == "size":
            key = None
            if after:
                try:
                    n, pid = (int(x) for x in after.split(".", 1))
                except ValueError:
                    raise HTTPException(400, "after is n_faces.person_id") from None
                key = (n, pid)
            cards = rv.people_by_size(after=key, limit=PAGE_PEOPLE)
            if len(cards) == PAGE_PEOPLE:
                nxt = _qs(dict(sort=sort, after=f"{cards[-1].n_faces}.{cards[-1].id}"))
        else:
            ids = doubt.page(after=_int(after, "after"), limit=PAGE_PEOPLE)
            cards = rv.people_cards(ids)
            o = doubt.order()
            scores = {c.id: o.cohesion.get(c.id, 0.0) for c in cards}
            if len(ids) == PAGE_PEOPLE:
                nxt = _qs(dict(sort=sort, after=ids[-1]))
        mosaic = rv.mosaic([c.id for c in cards], per_person=8)
        return page(request, "people.html", title="people", cards=cards, mosaic=mosaic, sort=sort, next_qs=nxt,
                    scores=scores)

    @app.get("/person/{person_id}", response_class=HTMLResponse)
    def person_page(request: Request, person_id: int, after: str = ""):
        card = rv.person(person_id)
        if card is None:
            raise HTTPException(404, "no such person (merged, split or erased?)")
        faces = rv.person_faces(person_id, after=_int(after, "after", default=0), limit=PAGE_FACES)
        nxt = _qs(dict(after=faces[-1].id)) if len(faces) == PAGE_FACES else None
        alike = doubt.look_alikes(person_id)
        alike_mosaic = rv.mosaic([p for p, _ in alike], per_person=4)
        return page(request, "person.html", title=f"person {person_id}", card=card, faces=faces, next_qs=nxt,
                    labels=rv.label_values_of_person(person_id), alike=alike, alike_mosaic=alike_mosaic,
                    cohesion=doubt.order().cohesion.get(person_id))

    def _face_list(form) -> list[int]:
        out = []
        for v in form.getlist("face"):
            n = _int(v, "face")
            if n:
                out.append(n)
        return out

    @app.post("/people/merge")
    async def people_merge(request: Request):
        form = await posted(request)
        keep = _int(form.get("keep"), "keep")
        others = [_int(v, "person") for v in form.getlist("other") if str(v).strip()]
        if not keep or not others:
            raise HTTPException(400, "choose the person to keep and at least one to merge into it")
        rep = await run_in_threadpool(verbs.merge_people, ws, keep, others)
        return done(f"/person/{keep}", f"merged {len(rep.deleted_people) or len(others)} people "
                                       f"({rep.faces} faces) into person {keep}")

    @app.post("/person/{person_id}/split")
    async def person_split(request: Request, person_id: int):
        form = await posted(request)
        faces = _face_list(form)
        if not faces:
            raise HTTPException(400, "tick the faces to split off")
        into = None if form.get("new") else _int(form.get("into"), "into")
        if form.get("move") and not into:
            raise HTTPException(400, "give the person to move the faces into")
        rep = await run_in_threadpool(verbs.split_faces, ws, faces, into=into or None)
        back = f"/person/{person_id}" if rv.person(person_id) else f"/person/{rep.person_id}"
        return done(back, f"moved {rep.faces} faces to person {rep.person_id}")

    @app.post("/person/{person_id}/not-a-person")
    async def person_not_a_person(request: Request, person_id: int):
        form = await posted(request)
        faces = _face_list(form)
        if not faces:
            raise HTTPException(400, "tick the faces that are not a person")
        rep = await run_in_threadpool(verbs.mark_not_a_person, ws, faces)
        back = f"/person/{person_id}" if rv.person(person_id) else "/people"
        return done(back, f"{rep.faces} faces marked not a person")

    @app.post("/person/{person_id}/label")
    async def person_label(request: Request, person_id: int):
        form = await posted(request)
        rep = await run_in_threadpool(verbs.set_person_label, ws, person_id, str(form.get("name") or ""),
                                      str(form.get("value") or ""))
        back = str(form.get("back") or "")
        url = back if back in ("/labels",) else f"/person/{person_id}"
        return done(url, f"label set on {rep.faces} images of person {person_id}")

    # -- assisted review: the questions `faceset people review` asks ----------------------------------------
    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request, limit: str = ""):
        from ..curate.people import review_questions

        n = _int(limit, "limit", default=REVIEW_LIMIT)
        if not 1 <= n <= REVIEW_MAX:
            raise HTTPException(400, f"limit must be between 1 and {REVIEW_MAX}")
        has_people = bool(rv.people_by_size(limit=1))
        qs = review_questions(ws, n) if has_people else []
        return page(request, "review.html", title="review", questions=qs, has_people=has_people, limit=n)

    @app.post("/review/answer")
    async def review_answer(request: Request):
        from ..curate.people import answer

        form = await posted(request)
        a, b = _int(form.get("a"), "face a"), _int(form.get("b"), "face b")
        if not a or not b:
            raise HTTPException(400, "the answer needs the two face ids (a, b)")
        same = str(form.get("same") or "").lower()
        if same not in ("yes", "no"):
            raise HTTPException(400, "same must be yes or no")
        kind = str(form.get("kind") or "") or None
        if kind is not None and kind not in REVIEW_KINDS:
            raise HTTPException(400, f"kind must be one of {', '.join(REVIEW_KINDS)}")
        # the page showed the people the faces were in; if either face moved since, the question is stale
        now = rv.persons_of_faces([a, b])
        if a not in now or b not in now:
            raise HTTPException(404, f"no face {', '.join(str(f) for f in (a, b) if f not in now)} "
                                     "(erased since the page was shown?)")
        shown = (_int(form.get("pa"), "person a"), _int(form.get("pb"), "person b"))
        if any(s is not None and s != now[f] for s, f in zip(shown, (a, b))):
            raise HTTPException(409, "this question is stale: its faces changed people since the page was shown "
                                     "(reload the review page)")
        rep = await run_in_threadpool(answer, ws, a, b, same == "yes", kind)
        what = {"merge": f"merged into person {rep.person_id}", "must_link": "kept together",
                "cannot_link": "kept apart", "split": f"{rep.faces} faces moved to person {rep.person_id}"}
        note = what.get(rep.action, rep.action)
        if rep.action == "split" and kind == "cluster":
            note = f"person {rep.person_id} split into {len(rep.people)} people ({rep.faces} faces moved)"
        return done("/review", f"faces {a} and {b}: answered {same}, {note} ({rep.decisions} decisions)")

    # -- duplicates -------------------------------------------------------------------------------------
    @app.get("/duplicates", response_class=HTMLResponse)
    def duplicates(request: Request, after: str = ""):
        groups = rv.dup_groups(after=_int(after, "after", default=0), limit=30)
        nxt = _qs(dict(after=groups[-1].keeper)) if len(groups) == 30 else None
        dims = {}
        for g in groups:
            for i in [g.keeper, *g.members]:
                d = rv.image(i)
                if d:
                    dims[i] = d
        return page(request, "duplicates.html", title="duplicates", groups=groups, next_qs=nxt, dims=dims)

    @app.post("/duplicates/keep")
    async def dup_keep(request: Request):
        form = await posted(request)
        iid = _int(form.get("image"), "image")
        if not iid:
            raise HTTPException(400, "which image to keep?")
        await run_in_threadpool(verbs.choose_keeper, ws, iid)
        return done("/duplicates", f"image {iid} is now the kept copy of its group")

    # -- labels -----------------------------------------------------------------------------------------
    @app.get("/labels", response_class=HTMLResponse)
    def labels_page(request: Request, label: str = "", noise: str = ""):
        from ..curate.labels import label_conflicts, label_noise

        names = ws.catalog.labels.names_with_values()
        if label and label not in names:
            raise HTTPException(400, "unknown label")
        conflicts = label_conflicts(ws, label=label or None).conflicts[:200]
        suspects, note = [], ""
        if noise and label:
            rep = label_noise(ws, label, top=50)
            suspects, note = rep.suspects, rep.note
        return page(request, "labels.html", title="labels", names=names, label=label, conflicts=conflicts,
                    suspects=suspects, noise=bool(noise and label), note=note)

    @app.post("/labels/image")
    async def label_image(request: Request):
        form = await posted(request)
        iid = _int(form.get("image"), "image")
        name, value = str(form.get("name") or ""), str(form.get("value") or "")
        await run_in_threadpool(verbs.set_image_label, ws, iid or 0, name, value)
        q = {"label": name}
        if form.get("noise"):
            q["noise"] = "1"
        return done(f"/labels?{urlencode(q)}", f"image {iid}: {name} set")

    # -- forget -----------------------------------------------------------------------------------------
    def _gc_forget():
        with forget_lock:
            for k in [k for k, r in forget_requests.items() if time.time() - r.created > FORGET_TTL_S]:
                forget_requests.pop(k, None)

    @app.get("/forget", response_class=HTMLResponse)
    def forget_page(request: Request):
        return page(request, "forget.html", title="forget", max_mb=max_upload // (1024 * 1024), stage="upload")

    @app.post("/forget")
    async def forget_upload(request: Request):
        form = await posted(request, files=True)
        uploads = [u for u in form.getlist("selfie") if hasattr(u, "read")]
        if not uploads:
            raise HTTPException(400, "choose at least one selfie")
        rgbs, total = [], 0
        for k, u in enumerate(uploads, 1):
            data = await u.read(max_upload + 1)
            total += len(data)
            if total > max_upload:
                raise HTTPException(413, f"uploads over the {max_upload:,} byte limit")
            try:
                dec = imageio.decode(data, max_file_bytes=max_upload)
            except imageio.Rejected as e:  # the same reasons ingest gives
                raise HTTPException(400, f"selfie {k} rejected: {e.code}: {e.reason}") from None
            rgbs.append(dec.rgb)
        from ..privacy.forget import forget

        try:
            rep = await run_in_threadpool(lambda: forget(ws, rgbs, dry_run=True, sheet=False))
        except Exception as e:
            if type(e).__name__ == "ForgetError" or isinstance(e, FacesetError):
                raise HTTPException(400, str(e).replace("selfie:", "selfie").strip()) from None
            raise
        _gc_forget()
        rid = secrets.token_urlsafe(16)
        with forget_lock:
            if len(forget_requests) >= 16:
                forget_requests.pop(next(iter(forget_requests)))
            forget_requests[rid] = ForgetRequest(rgbs, rep)
        return RedirectResponse(f"/forget/{rid}", status_code=303)

    def _forget_req(rid: str) -> ForgetRequest:
        r = forget_requests.get(rid) if len(rid) < 64 else None
        if r is None:
            raise HTTPException(404, "no such forget request (expired or done): upload the selfie again")
        return r

    @app.get("/forget/{rid}", response_class=HTMLResponse)
    def forget_review(request: Request, rid: str):
        r = _forget_req(rid)
        matched = {m.face_id for m in r.report.matches}
        people = sorted({m.person_id for m in r.report.matches if m.person_id is not None})
        extra: dict[int, list[int]] = {}
        for p in people[:20]:
            extra[p] = [f for f in rv.face_ids_of_person(p) if f not in matched][:200]
        return page(request, "forget.html", title="forget", stage="review", rid=rid, rep=r.report,
                    extra=extra)

    @app.post("/forget/{rid}/confirm")
    async def forget_confirm(request: Request, rid: str):
        form = await posted(request)
        r = _forget_req(rid)
        chosen = set(_face_list(form))
        if not chosen:
            raise HTTPException(400, "no face ticked: nothing to erase")
        rep = await run_in_threadpool(_erase_chosen, ws, r, chosen)
        with forget_lock:
            forget_requests.pop(rid, None)
        doubt.invalidate()
        entry = rv.audit_page(limit=1, action="forget")
        return page(request, "forget.html", title="forget", stage="done", rep=rep,
                    entry=entry[0] if entry else None)

    @app.post("/forget/{rid}/cancel")
    async def forget_cancel(request: Request, rid: str):
        await posted(request)
        with forget_lock:
            forget_requests.pop(rid, None)
        return done("/forget", "cancelled: nothing was erased, the selfies are dropped")

    # -- consent, audit, exports ------------------------------------------------------------------------
    @app.get("/consent", response_class=HTMLResponse)
    def consent_page(request: Request):
        from ..privacy.consent import ledger

        return page(request, "consent.html", title="consent", led=ledger(ws))

    @app.get("/rejected", response_class=HTMLResponse)
    def rejected_page(request: Request, reason: str = "", after: str = ""):
        counts = ws.catalog.images.rejected_by_reason()
        if reason and reason not in counts:
            raise HTTPException(400, f"reason must be one of {', '.join(counts) or '(none rejected)'}")
        rows = rv.rejected_files(after=_int(after, "after", default=0), limit=PAGE_REJECTED, reason=reason or None)
        nxt = _qs({k: v for k, v in dict(reason=reason, after=rows[-1].id).items() if v}) \
            if len(rows) == PAGE_REJECTED else None
        return page(request, "rejected.html", title="rejected files", rows=rows, counts=counts, reason=reason,
                    next_qs=nxt)

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request, action: str = "", before: str = ""):
        rows = rv.audit_page(before=_int(before, "before"), limit=100, action=action or None)
        nxt = _qs({k: v for k, v in dict(action=action, before=rows[-1].id).items() if v}) if len(rows) == 100 else None
        return page(request, "audit.html", title="audit log", rows=rows, actions=rv.audit_actions(), action=action,
                    next_qs=nxt)

    @app.get("/exports", response_class=HTMLResponse)
    def exports_page(request: Request):
        return page(request, "exports.html", title="exports", rows=rv.exports_list())

    @app.post("/exports/{export_id}/refresh")
    async def export_refresh(request: Request, export_id: int):
        await posted(request)
        from ..export.core import refresh

        reps = await run_in_threadpool(lambda: refresh(ws, export_id, progress=False))
        return done("/exports", f"export {export_id} rebuilt ({len(reps)} refreshed)")

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    from .portal import mount as mount_portal  # /c/<campaign>: the only pages open without the token

    mount_portal(app, ws, render=render, guard=guard, max_upload=max_upload)
    return app


def _erase_chosen(ws: Workspace, r: ForgetRequest, chosen: set[int]):
    """Erase exactly the faces the person ticked (found matches they kept + faces they added from the
    person's card), through the library's ``forget`` (its confirm step swaps in this selection)."""
    from ..privacy.forget import Match, forget

    found = {m.face_id: m for m in r.report.matches}
    info = {f.face_id: f for f in ws.catalog.faces.in_images(chosen)}
    if not info:
        raise NotFound("none of the ticked faces exists any more")
    per_image: dict[int, int] = {}
    main_in: set[int] = set()
    for f in info.values():
        per_image[f.image_id] = per_image.get(f.image_id, 0) + 1
        if f.is_main:
            main_in.add(f.image_id)
    selected = []
    for fid, f in sorted(info.items(), key=lambda kv: (kv[1].image_id, kv[0])):
        action = "erase_image" if (f.image_id in main_in or per_image[f.image_id] >= f.faces_in_image) else "blur_face"
        old = found.get(fid)
        selected.append(Match(face_id=fid, image_id=f.image_id, distance=old.distance if old else -1.0,
                              via=old.via if old else "review", person_id=f.person_id, is_main=f.is_main,
                              faces_in_image=f.faces_in_image, action=action,
                              source_paths=old.source_paths if old else []))

    def confirm(rep) -> bool:
        rep.matches[:] = selected  # the list erase() goes on to use
        return True

    return forget(ws, r.selfies, dry_run=False, confirm=confirm, sheet=False)


def _qs(d: dict) -> str:
    return urlencode({k: v for k, v in d.items() if v not in (None, "")})
