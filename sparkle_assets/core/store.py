"""The content-addressed artifact store: per-clip files named by what produced them.

An artifact's id is a hash of (kind, the ids of its inputs by role, the producing step's code
version, its parameters), so the same inputs + code + parameters always map to the same file, and a
step can skip work whose artifact already exists. Layout under the store root::

    <kind>/<id[:2]>/<id>.<ext>    the payload (absent for record-only artifacts)
    <kind>/<id[:2]>/<id>.artifact.json  the sidecar: size, sha256, stamp, info; written last, so it marks completion

A lookup trusts a payload whose size and stamp (modification time in ns, recorded at commit) match
its sidecar, so a run that changes nothing reads no payload byte; a payload whose stamp differs
(copied, touched) is hashed in full once and, if its sha256 still matches, re-stamped. `verify`
hashes everything.

Every write goes to a temporary name (`.<name>.tmp-<pid>-<random>`, the writing process's id in it)
and is renamed into place; a killed run leaves at worst a temporary file, never a payload+sidecar pair
that verifies, and `stale_temporaries` finds the temporaries whose writer is gone. Paths are always
resolved inside the root; anything that would escape it raises StoreError. No Dagster import here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ID_LENGTH = 24


class StoreError(ValueError):
    """A store path or artifact that cannot be used (escapes the root, fails verification...)."""


def contained(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """`root` joined with `parts`, resolved, refusing anything that leaves `root`: an absolute part,
    `..`, a NUL byte or a symlink that points out. The one containment check for every path built
    from data (store uris, export and bench files, contact sheets, theme names)."""
    base = Path(root).resolve()
    if any(not str(part) or "\x00" in str(part) for part in parts):
        raise StoreError(f"invalid path part in {[str(p) for p in parts]!r}")
    candidate = base.joinpath(*parts).resolve()
    if candidate != base and base not in candidate.parents:
        raise StoreError(f"path {'/'.join(str(p) for p in parts)!r} resolves outside {base}")
    return candidate


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def artifact_id(kind: str, inputs: Mapping[str, str | list[str]], code_version: str,
                params: Mapping[str, Any]) -> str:
    """Deterministic id of an artifact from what produced it."""
    norm_inputs = {role: sorted(v) if isinstance(v, list) else v for role, v in inputs.items()}
    blob = canonical_json({"kind": kind, "inputs": norm_inputs, "code": code_version, "params": params})
    return hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stamp_of(st: os.stat_result) -> str:
    """What a lookup compares instead of re-hashing: modification time (ns) and inode."""
    return f"{st.st_mtime_ns}:{st.st_ino}"
WRITER_PID = re.compile(r"\.tmp-(\d+)(?=[-.]|$)")  # ".tmp-<writer pid>-<random>" in a temporary's name


def temporary_name(name: str, ext: str = "") -> str:
    """The name a file being written is given until it is renamed into place (with the writer's pid)."""
    return f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}"


def stale_temporaries(root: str | os.PathLike, alive: Callable[[int], bool], any_live_writer: bool) -> list[Path]:
    """Temporaries under `root` whose writer is gone: the pids in the name are not `alive`. A name
    without a pid (written before pids were put in names) is stale only when no run is live
    (`any_live_writer` False)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            if ".tmp-" not in name:
                continue
            pids = [int(m) for m in WRITER_PID.findall(name)]
            owned = any(alive(pid) for pid in pids) if pids else any_live_writer
            if not owned:
                out.append(Path(dirpath) / name)
    return sorted(out)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temporary_name(path.name))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def publish_file(src: Path, dst: Path) -> None:
    """Make `dst` a copy of `src` (a hard link when both are on one filesystem), atomically; an
    existing `dst` that already is `src` is left alone."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(temporary_name(dst.name))
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact that exists in the store (its sidecar verified)."""

    id: str
    kind: str
    uri: str | None  # payload path relative to the store root, None for record-only artifacts
    bytes: int
    content_hash: str | None
    code_version: str
    params: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)  # role -> parent id (or list of ids)
    info: dict = field(default_factory=dict)  # measured facts: frame count, scores...
    stamp: str | None = None  # the payload's mtime (ns) and inode when committed (None: record-only, older sidecar)

    def to_json(self) -> dict:
        return asdict(self)


class ArtifactStore:
    """Files addressed by artifact id under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self._dirs: dict[tuple[str, str], str] = {}  # (kind, shard) -> its resolved folder, checked once

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------------
    def resolve(self, uri: str) -> Path:
        """Absolute path of a store-relative uri; refuses anything that escapes the root."""
        if not uri:
            raise StoreError(f"invalid store path {uri!r}")
        return contained(self.root, uri)

    def _base(self, kind: str, aid: str) -> str:
        if not kind.replace("_", "").isalnum() or not aid.isalnum():
            raise StoreError(f"invalid artifact kind/id {kind!r}/{aid!r}")
        return f"{kind}/{aid[:2]}/{aid}"

    def _sidecar(self, kind: str, aid: str) -> str:
        return f"{self._dir(kind, aid)}/{aid}.artifact.json"  # never a payload name

    def _dir(self, kind: str, aid: str) -> str:
        """The folder of an artifact (a str: lookups are hot). The kind and id are checked on every
        call; the folder is resolved and checked inside the root once per shard and process."""
        base = self._base(kind, aid)
        folder = self._dirs.get((kind, aid[:2]))
        if folder is None:
            folder = self._dirs[(kind, aid[:2])] = str(self.resolve(base).parent)
        return folder

    def _payload(self, art: StoredArtifact) -> str:
        """The payload path of a sidecar's artifact: it must be `<kind>/<id[:2]>/<id>.<ext>`."""
        name = art.uri.rsplit("/", 1)[-1]
        if art.uri != f"{self._base(art.kind, art.id).rsplit('/', 1)[0]}/{name}" or not name.startswith(f"{art.id}."):
            raise StoreError(f"artifact {art.id} names a payload {art.uri!r} outside its own place")
        return f"{self._dir(art.kind, art.id)}/{name}"

    # -- lookup ------------------------------------------------------------------------------
    def lookup(self, kind: str, aid: str, full: bool = False) -> StoredArtifact | None:
        """The artifact if it exists and its payload verifies, else None: size and stamp by default
        (no payload byte read), size and sha256 when `full` or when the stamp does not match."""
        sidecar = self._sidecar(kind, aid)
        try:
            with open(sidecar, "rb") as f:
                meta = json.loads(f.read())
            art = StoredArtifact(**meta)
        except (OSError, ValueError, TypeError):
            return None
        if art.id != aid or art.kind != kind:
            return None
        if art.uri is None:
            return art
        try:
            path = self._payload(art)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size != art.bytes:
                return None
            if not full and art.stamp == stamp_of(st):
                return art
            if file_sha256(path) != art.content_hash:
                return None
        except (OSError, StoreError):
            return None
        if art.stamp != stamp_of(st):  # verified in full: stamp it, so the next lookup reads nothing
            art = StoredArtifact(**{**art.to_json(), "stamp": stamp_of(st)})
            atomic_write_bytes(Path(sidecar), canonical_json(art.to_json()).encode())
        return art

    @staticmethod
    def owner_of(uri: str) -> tuple[str, str]:
        """(kind, artifact id) of the artifact whose payload is at store uri `<kind>/<id[:2]>/<id>.<ext>`
        (a decision such as a static clip records the payload of the artifact it decided on)."""
        parts = uri.split("/")
        if len(parts) != 3:
            raise StoreError(f"not a payload path of the store: {uri!r}")
        return parts[0], parts[2].split(".", 1)[0]

    def files(self) -> Iterator[tuple[str, str, Path]]:
        """Every file in the store that is not a temporary, as (kind, artifact id, path): payloads
        and sidecars (`<id>.artifact.json`)."""
        if not self.root.is_dir():
            return
        for kind_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for path in sorted(kind_dir.glob("*/*")):
                if path.is_file() and not path.name.startswith("."):
                    yield kind_dir.name, path.name.split(".", 1)[0], path

    def payload_path(self, kind: str, aid: str, ext: str) -> Path:
        """Where the payload of artifact `aid` lives (whether or not it exists yet)."""
        return self.resolve(f"{self._base(kind, aid)}.{ext.lstrip('.')}")

    def path_of(self, art: StoredArtifact) -> Path:
        if art.uri is None:
            raise StoreError(f"artifact {art.id} ({art.kind}) has no payload file")
        return self.resolve(art.uri)

    # -- writes ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, kind: str, aid: str, ext: str) -> Iterator[Path]:
        """Yield a temporary path to write the payload to; on success it is moved into place.

        Commit (the sidecar) happens in `commit`; a payload without a sidecar is never trusted.
        """
        final = self.payload_path(kind, aid, ext)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(temporary_name(aid, f".{ext.lstrip('.')}"))
        try:
            yield tmp
            if not tmp.exists():
                raise StoreError(f"the step wrote no file for artifact {aid} ({kind})")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def commit(self, kind: str, aid: str, *, code_version: str, params: Mapping[str, Any],
               inputs: Mapping[str, Any], info: Mapping[str, Any] | None = None,
               ext: str | None = None) -> StoredArtifact:
        """Write the sidecar for an artifact whose payload (if ext is given) is already in place."""
        uri = None
        size, digest, stamp = 0, None, None
        if ext is not None:
            uri = f"{self._base(kind, aid)}.{ext.lstrip('.')}"
            path = self.resolve(uri)
            st = path.stat()
            size, digest, stamp = st.st_size, file_sha256(path), stamp_of(st)
        art = StoredArtifact(id=aid, kind=kind, uri=uri, bytes=size, content_hash=digest,
                             code_version=code_version, params=dict(params), inputs=dict(inputs),
                             info=dict(info or {}), stamp=stamp)
        atomic_write_bytes(Path(self._sidecar(kind, aid)), canonical_json(art.to_json()).encode())
        return art
