"""forget's plan step is pure data, and bad arguments are user errors (no workspace, no photos needed)."""

from __future__ import annotations

import numpy as np
import pytest

from faceset.errors import FacesetError, NotFound, UsageError
from faceset.privacy.forget import ErasurePlan, ForgetError, Match, find_matches, plan, selfie_embeddings


def _m(face, image, action):
    return Match(face_id=face, image_id=image, distance=0.1, via="embedding", person_id=None, is_main=False,
                 faces_in_image=3, action=action)


def test_plan_splits_erasure_and_hiding():
    p = plan([_m(5, 2, "blur_face"), _m(1, 1, "erase_image"), _m(7, 3, "drop_group_photo"), _m(4, 2, "blur_face")])
    assert p == ErasurePlan(erase_images=(1, 3), hide_faces={2: (4, 5)}, faces=(1, 4, 5, 7))
    assert p.touched_images == (1, 2, 3)
    assert p.to_dict() == {"erase_images": [1, 3], "hide_faces": {"2": [4, 5]}, "faces": [1, 4, 5, 7]}
    assert plan([]) == ErasurePlan()


def test_bad_arguments_are_usage_errors(ws, tmp_path):
    assert issubclass(ForgetError, UsageError) and issubclass(ForgetError, FacesetError)
    with pytest.raises(UsageError, match="threshold"):
        find_matches(ws, [], 2.5, selfie_emb=np.ones((1, 128), np.float32))
    with pytest.raises(NotFound, match="no such file"):
        selfie_embeddings([tmp_path / "missing.jpg"])
    with pytest.raises(ForgetError, match="at least one"):
        selfie_embeddings([])
