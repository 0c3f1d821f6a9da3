"""The store never follows or writes through links (hostile trial, issue #15 high 1)."""

from __future__ import annotations

import hashlib
import os

import pytest

from faceset.store import Store, StoreError


def _victim(tmp_path, text=b"my thesis, chapter 1\n" * 10):
    v = tmp_path / "outside" / "victim.txt"
    v.parent.mkdir()
    v.write_bytes(text)
    return v, hashlib.sha256(text).hexdigest()


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_gc_and_delete_never_zero_fill_a_file_outside_through_a_symlink(tmp_path):
    st = Store(tmp_path / "store")
    victim, h = _victim(tmp_path)
    key = "ab" * 32
    st.path(key).parent.mkdir(parents=True)
    os.symlink(victim, st.path(key))
    assert st.gc(referenced=[]) == 1
    assert _sha(victim) == h and not os.path.lexists(st.path(key))
    assert any("not a regular file" in why for _, why in st.anomalies)


def test_delete_of_a_hardlinked_object_unlinks_only_our_name(tmp_path):
    st = Store(tmp_path / "store")
    victim, h = _victim(tmp_path)
    key = st.put(victim.read_bytes())
    os.unlink(st.path(key))
    os.link(victim, st.path(key))  # a referenced object replaced by a hard link
    with pytest.raises(StoreError, match="hard links"):
        st.get(key)
    assert st.delete(key) is True
    assert _sha(victim) == h and not st.path(key).exists()


def test_reading_a_symlinked_object_is_refused_with_one_line(tmp_path):
    st = Store(tmp_path / "store")
    victim, _ = _victim(tmp_path)
    key = st.put(b"real bytes")
    os.unlink(st.path(key))
    os.symlink(victim, st.path(key))
    with pytest.raises(StoreError, match="is a link") as e:
        st.get(key)
    assert "\n" not in str(e.value)
    assert st.check(key) is not None and not st.exists(key)


def test_a_symlinked_store_folder_is_never_entered(tmp_path):
    st = Store(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    key = "cd" * 32
    (outside / key).write_bytes(b"keep me")
    (st.root / "cd").mkdir()
    os.symlink(outside, st.root / "cd" / "cd")
    assert list(st.keys()) == []
    assert st.gc([]) == 0 and st.delete(key) is False
    with pytest.raises(StoreError, match="not a real folder"):
        st.get(key)
    assert (outside / key).read_bytes() == b"keep me"


def test_put_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    st = Store(tmp_path / "store")
    victim, h = _victim(tmp_path, b"x" * 5)
    data = b"y" * 5  # same size: the old code took an existing same-size file as the object
    key = hashlib.sha256(data).hexdigest()
    st.path(key).parent.mkdir(parents=True)
    os.symlink(victim, st.path(key))
    assert st.put(data) == key
    assert _sha(victim) == h and st.get(key) == data and not st.path(key).is_symlink()


def test_check_finds_a_damaged_object(tmp_path):
    st = Store(tmp_path / "store")
    key = st.put(b"hello world")
    assert st.check(key) is None
    st.path(key).write_bytes(b"hello w0rld")
    assert "damaged" in st.check(key)
    assert "missing" in st.check("ef" * 32)


def _put_many(root, seed):
    st = Store(root)
    return [st.put(f"{seed}-{i}".encode(), sync=False) for i in range(400)]


def test_concurrent_writers_share_new_folders(tmp_path):
    """Ingest's decode workers put objects at once: two of them creating the same store folder is normal."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        keys = [k for ks in pool.map(_put_many, [tmp_path / "store"] * 4, range(4)) for k in ks]
    st = Store(tmp_path / "store")
    assert len(set(keys)) == 1600 and all(st.exists(k) for k in keys)
