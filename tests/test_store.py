import pytest

from sparkle_assets.core.store import ArtifactStore, StoreError, artifact_id


def test_artifact_id_depends_on_kind_inputs_code_and_params():
    base = artifact_id("mask", {"clip": "a"}, "v1", {"n": 3})
    assert base == artifact_id("mask", {"clip": "a"}, "v1", {"n": 3})
    assert len({base, artifact_id("plate", {"clip": "a"}, "v1", {"n": 3}),
                artifact_id("mask", {"clip": "b"}, "v1", {"n": 3}),
                artifact_id("mask", {"clip": "a"}, "v2", {"n": 3}),
                artifact_id("mask", {"clip": "a"}, "v1", {"n": 4})}) == 5
    # list inputs are order-free
    assert artifact_id("k", {"p": ["x", "y"]}, "v", {}) == artifact_id("k", {"p": ["y", "x"]}, "v", {})


def test_write_commit_lookup_roundtrip(tmp_path):
    store = ArtifactStore(tmp_path)
    aid = artifact_id("thing", {}, "v1", {})
    with store.writing("thing", aid, "bin") as tmp:
        tmp.write_bytes(b"payload")
    assert store.lookup("thing", aid) is None  # no sidecar yet: not trusted
    art = store.commit("thing", aid, code_version="v1", params={}, inputs={}, info={"x": 1}, ext="bin")
    found = store.lookup("thing", aid)
    assert found == art and found.bytes == 7 and found.info == {"x": 1}
    assert store.path_of(found).read_bytes() == b"payload"


def test_failed_write_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writing("thing", "abc123", "bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert store.lookup("thing", "abc123") is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_lookup_rejects_damaged_payload(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    with store.writing("thing", "abc123", "bin") as tmp:
        tmp.write_bytes(b"0123456789")
    art = store.commit("thing", "abc123", code_version="v", params={}, inputs={}, ext="bin")
    path = store.path_of(art)
    if damage == "truncate":
        path.write_bytes(b"01234")
    elif damage == "flip":
        path.write_bytes(b"0123456780")
    else:
        path.unlink()
    assert store.lookup("thing", "abc123") is None


@pytest.mark.parametrize("uri", ["../outside.mp4", "a/../../outside", "/etc/passwd", ""])
def test_paths_escaping_the_store_are_refused(tmp_path, uri):
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(StoreError):
        store.resolve(uri)



def test_an_id_with_a_path_in_it_is_refused_after_its_shard_was_seen(tmp_path):
    """The shard folder is resolved once per process; the id is still checked on every call (an id
    such as `ab/../../x` once reached outside the store after a lookup of `ab...`)."""
    (tmp_path / "store").mkdir()
    (tmp_path / "outside.artifact.json").write_text('{"id": "ab/../../../../outside"}')
    store = ArtifactStore(tmp_path / "store")
    assert store.lookup("thing", "ab0000") is None
    for aid in ("ab/../../../../outside", "ab/x", "ab\x00"):
        with pytest.raises(StoreError, match="invalid artifact"):
            store.lookup("thing", aid)

def test_symlink_escape_is_refused(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "link").symlink_to(tmp_path)
    with pytest.raises(StoreError, match="outside"):
        ArtifactStore(tmp_path / "store").resolve("link/secret")


def test_record_only_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    art = store.commit("score", "abc123", code_version="v", params={"t": 1}, inputs={"clip": "c"}, info={"s": 0.5})
    assert art.uri is None and store.lookup("score", "abc123").info == {"s": 0.5}
    with pytest.raises(StoreError):
        store.path_of(art)


def test_lookup_reads_no_payload_byte_when_the_stamp_matches(tmp_path, monkeypatch):
    from sparkle_assets.core import store as store_module

    store = ArtifactStore(tmp_path)
    with store.writing("thing", "abc123", "bin") as tmp:
        tmp.write_bytes(b"0123456789")
    store.commit("thing", "abc123", code_version="v", params={}, inputs={}, ext="bin")
    hashed = []
    real = store_module.file_sha256
    monkeypatch.setattr(store_module, "file_sha256", lambda p, *a: hashed.append(p) or real(p, *a))
    assert store.lookup("thing", "abc123") is not None and hashed == []
    assert store.lookup("thing", "abc123", full=True) is not None and len(hashed) == 1
    # a payload touched (or copied) keeps its bytes: hashed once, re-stamped, then trusted again
    import os
    path = tmp_path / "thing" / "ab" / "abc123.bin"
    os.utime(path, ns=(1, 1))
    assert store.lookup("thing", "abc123") is not None and len(hashed) == 2
    assert store.lookup("thing", "abc123") is not None and len(hashed) == 2


def test_a_sidecar_naming_another_place_is_refused(tmp_path):
    import json

    store = ArtifactStore(tmp_path)
    with store.writing("thing", "abc123", "bin") as tmp:
        tmp.write_bytes(b"0123456789")
    store.commit("thing", "abc123", code_version="v", params={}, inputs={}, ext="bin")
    (tmp_path / "other.bin").write_bytes(b"0123456789")
    sidecar = tmp_path / "thing" / "ab" / "abc123.artifact.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "uri": "other.bin"}))
    assert store.lookup("thing", "abc123") is None


def test_source_hashes_are_remembered_by_stat_and_checked_by_verify(tmp_path, monkeypatch):
    """A no-op re-ingest reads no source byte (the hash is remembered by path, size, time and inode);
    a file changed visibly is hashed again; one rewritten with its old size and time is what
    `changed_sources` (sparkle verify) finds."""
    import os

    from conftest import make_clip
    from sparkle_assets.core import source_hashes
    from sparkle_assets.core.ingest import IngestJob, ingest_source
    from sparkle_assets.core.step_configs import SourceClipsConfig

    hashed = []
    real = source_hashes.file_sha256
    monkeypatch.setattr(source_hashes, "file_sha256", lambda p: hashed.append(str(p)) or real(p))
    clip = make_clip(tmp_path / "src" / "a.mp4", frames=20)
    cache = tmp_path / "home" / "cache" / "source_hashes"
    job = IngestJob(str(tmp_path / "home" / "store"), str(clip), "a", "test", None,
                    SourceClipsConfig(min_frames=9, max_frames=17).model_dump(), str(cache))
    first = ingest_source(job)
    assert first.status == "ok" and first.fresh and len(hashed) == 2  # remembered, then in full before decoding
    hashed.clear()
    again = ingest_source(job)
    assert not again.fresh and again.record.id == first.record.id and hashed == []
    assert source_hashes.changed_sources(cache) == (1, [])  # verify hashes in full
    hashed.clear()
    os.utime(clip)  # touched: a new modification time, hashed again, same content, same record
    assert ingest_source(job).record.id == first.record.id and len(hashed) == 1
    st = clip.stat()
    data = bytearray(clip.read_bytes())
    data[-1] ^= 0xFF
    clip.write_bytes(bytes(data))
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same time: the stat cannot tell
    checked, problems = source_hashes.changed_sources(cache)
    assert checked == 1 and len(problems) == 1 and "a.mp4 changed without a new size" in problems[0]
    assert source_hashes.source_sha256(clip, None) == real(clip) != first.record.info["sha256"]
    (cache / next(cache.iterdir()).name).write_text('{"path": 1}')  # a damaged entry is ignored, not trusted
    assert source_hashes.source_sha256(clip, cache) == real(clip)
