"""The dlib detectors, landmark predictor and embedder, loaded once per process.

Workers load their own on first use.
"""

from __future__ import annotations

from functools import lru_cache

from ..model_files import face_model


@lru_cache(maxsize=None)
def hog():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def mmod():
    import dlib

    return dlib.cnn_face_detection_model_v1(str(face_model("mmod")))


@lru_cache(maxsize=None)
def landmarks5():
    import dlib

    return dlib.shape_predictor(str(face_model("landmarks5")))


@lru_cache(maxsize=None)
def resnet():
    import dlib

    return dlib.face_recognition_model_v1(str(face_model("resnet")))
