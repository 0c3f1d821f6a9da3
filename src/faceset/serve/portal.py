"""The contribution portal: the pages at ``/c/<campaign>``, the only ones reachable without a token.

A participant reads the purpose and the consent text, ticks each use separately, confirms they are an
adult and the person in the photos, uploads a selfie and their photos and may self-report the campaign's
labels (always with "prefer not to say"); they get a printable receipt with a withdrawal code shown once.
``/c/<campaign>/withdraw`` takes the code (or a selfie) and erases everything of them.

Nothing here shows a photo, a face or anyone else's data: pages render only the campaign's own texts,
what this request sent, and counts. Abuse limits: per-IP rate limits on both POSTs, a cap on photos per
contribution (the campaign's) and on bytes per file and per request, closed and expired campaigns
refuse, one contribution is processed at a time.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from .. import collect
from ..errors import FacesetError
from ..workspace import Workspace

# (requests, seconds) per client address
RATE_LIMITS = {"contribute": (6, 600), "withdraw": (12, 600)}
REFUSAL_DELAY_S = 0.3


class RateLimiter:
    """Sliding-window counts per (action, client address), in memory."""

    def __init__(self, limits: dict[str, tuple[int, int]]):
        self.limits = limits
        self.hits: dict[tuple[str, str], deque] = {}
        self.lock = threading.Lock()

    def allow(self, action: str, who: str) -> bool:
        n, window = self.limits[action]
        t = time.monotonic()
        with self.lock:
            if len(self.hits) > 10000:  # forget idle clients
                self.hits = {k: v for k, v in self.hits.items() if v and t - v[-1] < window}
            q = self.hits.setdefault((action, who), deque())
            while q and t - q[0] > window:
                q.popleft()
            if len(q) >= n:
                return False
            q.append(t)
            return True


def mount(app: FastAPI, ws: Workspace, *, render, guard, max_upload: int) -> None:
    """Add the portal routes to the review app (``render`` is the app's page renderer)."""
    limiter = RateLimiter(RATE_LIMITS)
    work = threading.Lock()
    app.state.portal_limiter = limiter

    def page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        return HTMLResponse(render(request, name, **ctx), status_code=status)

    def campaign_or_page(request: Request, slug: str):
        try:
            return collect.open_campaign(ws, slug), None
        except collect.CampaignNotFound as e:
            return None, page(request, "portal_closed.html", status=404, title="campaign", message=str(e))

    async def form_of(request: Request, files: int):
        try:
            form = await request.form(max_files=files, max_fields=200, max_part_size=max_upload)
        except Exception as e:  # malformed multipart, too many parts, a part over the limit
            detail = str(getattr(e, "detail", "") or e)
            if "files" in detail.lower():
                raise collect.CollectError(f"too many files: a selfie and at most {files - 1} photos, please") from None
            raise collect.CollectError(f"the upload could not be read ({type(e).__name__}): "
                                       "fewer or smaller files, please") from None
        if not guard.csrf_ok(getattr(request.state, "sid", None), form.get("csrf")):
            raise collect.CollectError("this form expired: reload the page and try again")
        return form

    def client(request: Request) -> str:
        return request.client.host if request.client else "?"

    @app.get("/c/{slug}", response_class=HTMLResponse)
    def portal_page(request: Request, slug: str):
        camp, closed = campaign_or_page(request, slug)
        if closed:
            return closed
        return page(request, "portal_contribute.html", title=camp.title, camp=camp, labels=_labels(camp),
                    max_mb=collect.MAX_FILE_BYTES // (1024 * 1024), error=None)

    @app.post("/c/{slug}", response_class=HTMLResponse)
    async def portal_contribute(request: Request, slug: str):
        camp, closed = campaign_or_page(request, slug)
        if closed:
            return closed

        def again(msg: str, status: int = 400):
            return page(request, "portal_contribute.html", status=status, title=camp.title, camp=camp,
                        labels=_labels(camp), max_mb=collect.MAX_FILE_BYTES // (1024 * 1024), error=msg)

        if not limiter.allow("contribute", client(request)):
            return again("too many contributions from this address: try again later", 429)
        try:
            form = await form_of(request, camp.max_photos + 1)
            selfie = form.get("selfie")
            selfie_bytes = await selfie.read(collect.MAX_FILE_BYTES + 1) if hasattr(selfie, "read") else b""
            photos = []
            for u in form.getlist("photos"):
                if hasattr(u, "read") and (u.filename or ""):
                    photos.append((u.filename, await u.read(collect.MAX_FILE_BYTES + 1)))
            labels = {}
            for name, _kind in camp.labels:
                v = str(form.get(f"label_{name}") or "").strip()
                if form.get(f"label_{name}_prefer_not") or not v:
                    v = collect.PREFER_NOT
                labels[name] = v
            kw = dict(scopes=[str(s) for s in form.getlist("scope")], adult=bool(form.get("adult")),
                      is_me=bool(form.get("is_me")), selfie=selfie_bytes, photos=photos, labels=labels)

            def run():
                with work:
                    return collect.contribute(ws, slug, **kw)

            rep = await run_in_threadpool(run)
        except FacesetError as e:
            return again(_one_line(e))
        return page(request, "portal_receipt.html", title="receipt", camp=camp, rep=rep)

    @app.get("/c/{slug}/withdraw", response_class=HTMLResponse)
    def portal_withdraw_page(request: Request, slug: str):
        camp = ws.catalog.campaigns.by_slug(slug) if len(slug) <= 64 else None
        if camp is None:
            return page(request, "portal_closed.html", status=404, title="campaign", message="no such campaign")
        return page(request, "portal_withdraw.html", title="withdraw", camp=camp, rep=None, error=None)

    @app.post("/c/{slug}/withdraw", response_class=HTMLResponse)
    async def portal_withdraw(request: Request, slug: str):
        camp = ws.catalog.campaigns.by_slug(slug) if len(slug) <= 64 else None
        if camp is None:
            return page(request, "portal_closed.html", status=404, title="campaign", message="no such campaign")
        if not limiter.allow("withdraw", client(request)):
            return page(request, "portal_withdraw.html", status=429, title="withdraw", camp=camp, rep=None,
                        error="too many attempts from this address: try again later")
        try:
            form = await form_of(request, 1)
            code = str(form.get("code") or "").strip()[:200]
            selfie = form.get("selfie")
            data = await selfie.read(collect.MAX_FILE_BYTES + 1) if hasattr(selfie, "read") and selfie.filename \
                else None

            def run():
                with work:
                    return collect.withdraw(ws, slug, code=code or None, selfie=None if code else data)

            rep = await run_in_threadpool(run)
        except FacesetError as e:
            time.sleep(REFUSAL_DELAY_S)
            return page(request, "portal_withdraw.html", status=400, title="withdraw", camp=camp, rep=None,
                        error=_one_line(e))
        return page(request, "portal_withdraw.html", title="withdraw", camp=camp, rep=rep, error=None)


def _labels(camp) -> list[dict]:
    out = []
    for name, kind in camp.labels:
        choices = kind[7:].split("|") if kind.startswith("choice:") else None
        out.append({"name": name, "title": name.replace("_", " "), "choices": choices})
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]
