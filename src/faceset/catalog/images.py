"""Images and files: one row per distinct image, one per original path seen (rejects included)."""

from __future__ import annotations

from typing import Iterable

from .db import Repo, chunks, placeholders


class Images(Repo):
    """Rows of ``images`` and ``files``."""

    def first_paths(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> the first original path recorded for it (the owner's view; never exported)."""
        out: dict[int, str] = {}
        for part in chunks(image_ids):
            for r in self.db.q(f"SELECT image_id, path FROM files WHERE id IN (SELECT MIN(id) FROM files "
                               f"WHERE image_id IN ({placeholders(len(part))}) GROUP BY image_id)", part):
                out[r[0]] = r[1]
        return out

    def store_key(self, image_id: int) -> str | None:
        return self.db.scalar("SELECT store_key FROM images WHERE id=?", (int(image_id),))

    # -- section: ingest --
    # (end of section: ingest)
    # -- section: privacy --
    # (end of section: privacy)
    # -- section: curate --
    # (end of section: curate)
    # -- section: export --
    # (end of section: export)
