"""The content-addressed artifact store: per-clip files named by what produced them.

An artifact's id is a hash of (kind, the ids of its inputs by role, the producing step's code
version, its parameters), so the same inputs + code + parameters always map to the same file, and a
step can skip work whose artifact already exists. Layout under the store root::

    <kind>/<id[:2]>/<id>.<ext>    the payload (absent for record-only artifacts)
    <kind>/<id[:2]>/<id>.artifact.json  the sidecar: size, sha256, info; written last, so it marks completion

Every write goes to a temporary name and is renamed into place; a killed run leaves at worst an
orphaned temporary file, never a payload+sidecar pair that verifies. Paths are always resolved
inside the root; anything that would escape it raises StoreError. No Dagster import here.
"""

from __future__ import annotations

import contextlib
import shutil
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Mapping
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
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
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
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

    def to_json(self) -> dict:
        return asdict(self)


class ArtifactStore:
    """Files addressed by artifact id under one root directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

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

    def _sidecar(self, kind: str, aid: str) -> Path:
        return self.resolve(self._base(kind, aid) + ".artifact.json")  # never a payload name

    # -- lookup ------------------------------------------------------------------------------
    def lookup(self, kind: str, aid: str) -> StoredArtifact | None:
        """The artifact if it exists and its payload verifies (size and sha256), else None."""
        sidecar = self._sidecar(kind, aid)
        try:
            meta = json.loads(sidecar.read_text())
            art = StoredArtifact(**meta)
        except (OSError, ValueError, TypeError):
            return None
        if art.id != aid or art.kind != kind:
            return None
        if art.uri is not None:
            path = self.resolve(art.uri)
            try:
                if path.stat().st_size != art.bytes or file_sha256(path) != art.content_hash:
                    return None
            except OSError:
                return None
        return art

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
        tmp = final.with_name(f".{aid}.tmp-{uuid.uuid4().hex[:8]}.{ext.lstrip('.')}")
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
        size, digest = 0, None
        if ext is not None:
            uri = f"{self._base(kind, aid)}.{ext.lstrip('.')}"
            path = self.resolve(uri)
            size, digest = path.stat().st_size, file_sha256(path)
        art = StoredArtifact(id=aid, kind=kind, uri=uri, bytes=size, content_hash=digest,
                             code_version=code_version, params=dict(params), inputs=dict(inputs),
                             info=dict(info or {}))
        atomic_write_bytes(self._sidecar(kind, aid), canonical_json(art.to_json()).encode())
        return art
