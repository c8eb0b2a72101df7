"""Ingesting one source video: hash, probe, decode-check and normalise it into clips.

The ingest of a file is a record-only artifact (kind `source_file`) whose id depends on the file's
content and the normalisation parameters, so an unchanged file is never decoded twice. A usable
file becomes one or more `source_clip` artifacts: H.264 mp4 at the target fps, size capped, 4k+1
frames (at most 81), long videos cut into consecutive clips. Files that are empty, unreadable,
truncated, too short or of absurd resolution are quarantined with a reason (a `VideoError`), never
raised. `source_clips` ingests the configured sources with it; the benchmark ingests its samples'
source videos with it, so both are stored, checked and traced the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sparkle_model.video import (MAX_FRAMES, VideoError, check_file, clip_lengths, decode_check, iter_frames, probe,
                                 resample_indices, target_size, write_video)

from .costs import split_cost
from .executor import Cost
from .lineage import ArtifactRow
from .sources import absolute_path
from .source_hashes import source_sha256
from .store import ArtifactStore, StoredArtifact, artifact_id

CODE_VERSION = "source_clips-2"  # 2: decoder errors and forged headers quarantined
TRUNCATION_TOLERANCE = 0.9  # fewer decoded frames than this share of the declared count = truncated


@dataclass(frozen=True)
class IngestJob:
    store_root: str
    path: str
    clip_id: str
    origin: str
    prompt: str | None
    params: dict
    hash_cache: str | None = None  # where source hashes are remembered (core.source_hashes; None: hash every time)


@dataclass
class IngestResult:
    record: StoredArtifact  # kind source_file, record-only
    clips: list[StoredArtifact] = field(default_factory=list)
    fresh: bool = True

    @property
    def status(self) -> str:
        return self.record.info["status"]


def ingest_source(job: IngestJob) -> IngestResult:
    """Hash, check and normalise one source file (runs in an executor worker). A file that cannot be
    used is quarantined with its reason under its content hash, so it is never tried again. With
    `hash_cache`, an unchanged file (same size, modification time and inode) is not read again."""
    store = ArtifactStore(job.store_root)
    path = Path(job.path)
    record_params = {**job.params, "clip_id": job.clip_id}
    try:
        check_file(path)
    except VideoError as exc:
        # nothing to hash: the record is keyed by the path, so a later good file there is tried
        return IngestResult(_commit_record(store, artifact_id("source_file", {"path": job.path}, CODE_VERSION,
                                                              record_params),
                                           job, record_params, None, "quarantined", str(exc)))
    digest = source_sha256(path, job.hash_cache)
    rid = artifact_id("source_file", {"content": digest}, CODE_VERSION, record_params)
    cached = store.lookup("source_file", rid)
    if cached is not None:
        clips = [store.lookup("source_clip", c["id"]) for c in cached.info.get("clips", [])]
        if all(clips):
            return IngestResult(cached, clips, fresh=False)
    if job.hash_cache is not None:  # it is decoded now anyway: its hash too is taken from its bytes
        digest = source_sha256(path, job.hash_cache, full=True)
        rid = artifact_id("source_file", {"content": digest}, CODE_VERSION, record_params)
    try:
        clips = _normalise(store, job, rid, path)
        status, reason = "ok", None
    except VideoError as exc:
        clips, status, reason = [], "quarantined", str(exc)
    except MemoryError:
        clips, status, reason = [], "quarantined", "ran out of memory decoding it"
    record = _commit_record(store, rid, job, record_params, digest, status, reason,
                            clips=[{"clip_id": c.info["clip_id"], "id": c.id} for c in clips])
    return IngestResult(record, clips)


def _commit_record(store, rid, job, params, digest, status, reason, clips=()) -> StoredArtifact:
    info = {"status": status, "reason": reason, "path": job.path, "sha256": digest, "origin": job.origin,
            "clip_id": job.clip_id, "clips": list(clips)}
    return store.commit("source_file", rid, code_version=CODE_VERSION, params=params,
                        inputs={"content": digest or job.path}, info=info)


def source_frames_needed(params: dict, src_fps: float) -> int:
    """How many source frames the configured clips can use at most: what is decoded, whatever the
    header declares."""
    out_frames = params["max_frames"] * params["max_clips_per_video"] + 1
    return int(np.floor(out_frames * src_fps / params["fps"])) + 2


def _normalise(store: ArtifactStore, job: IngestJob, rid: str, path: Path) -> list[StoredArtifact]:
    """Check the part of the file the clips need, then stream it into clips: decoding stops after
    the last frame needed, and at most one frame (plus the one being written) is held in memory."""
    p = job.params
    info = probe(path)  # refuses absurd declared sizes, durations and pixels x frames
    size = target_size(info.width, info.height, p["max_side"])
    limit = min(info.frames or MAX_FRAMES, source_frames_needed(p, info.fps))
    # ffmpeg reports what OpenCV conceals; about 20 Mpx/s is the slowest decode we accept
    decoded = decode_check(path, limit, timeout=30 + limit * info.width * info.height / 2e7)
    if decoded == 0:
        raise VideoError("corrupt: no decodable frames")
    if info.frames and decoded < TRUNCATION_TOLERANCE * limit:
        raise VideoError(f"truncated or corrupt: decoded {decoded} of the first {limit} frames "
                         f"({info.frames} declared)")
    keep_until = p["max_frames"] * p["max_clips_per_video"] + 1
    wanted = resample_indices(decoded, info.fps, p["fps"])[:keep_until]
    segments = clip_lengths(len(wanted), p["max_frames"], p["min_frames"], p["max_clips_per_video"])
    if not segments:
        raise VideoError(f"too short: {len(wanted)} frames at {p['fps']:g} fps (need {p['min_frames']})")
    frames = _NeededFrames(path, (info.width, info.height), size)
    written: list[tuple[str, dict, Path]] = []
    try:
        for k, (start, length) in enumerate(segments):
            params = {**p, "segment": k}
            aid = artifact_id("source_clip", {"source": rid}, CODE_VERSION, params)
            with store.writing("source_clip", aid, "mp4") as tmp:
                write_video(tmp, (frames.get(int(i)) for i in wanted[start:start + length]), fps=p["fps"])
            written.append((aid, params, store.payload_path("source_clip", aid, "mp4")))
    except BaseException:
        for _, _, payload in written:  # never leave payloads of a file whose clips are not all made
            payload.unlink(missing_ok=True)
        raise
    finally:
        frames.close()
    out = []
    for k, ((start, length), (aid, params, _)) in enumerate(zip(segments, written)):
        clip_id = job.clip_id if len(segments) == 1 else f"{job.clip_id}_{k:02d}"
        out.append(store.commit(
            "source_clip", aid, code_version=CODE_VERSION, params=params, inputs={"source": rid}, ext="mp4",
            info={"clip_id": clip_id, "frames": int(length), "fps": p["fps"], "width": size[0],
                  "height": size[1], "start_seconds": round(start / p["fps"], 3), "source_path": job.path,
                  "source_fps": info.fps, "source_size": [info.width, info.height], "prompt": job.prompt,
                  "origin": job.origin}))
    return out


class _NeededFrames:
    """Source frames by increasing index, resized, decoded once: `get(i)` decodes up to frame i and
    keeps only the latest frame (an index may repeat when the target fps is higher)."""

    def __init__(self, path: Path, declared_size: tuple[int, int], size: tuple[int, int]):
        self.frames, self.declared, self.size = iter_frames(path), declared_size, size
        self.index, self.frame = -1, None

    def get(self, i: int) -> np.ndarray:
        while self.index < i:
            frame = next(self.frames, None)
            if frame is None:
                raise VideoError(f"truncated or corrupt: frame {i} does not decode (the stream ends at {self.index + 1})")
            if frame.shape[1::-1] != self.declared:
                w, h = self.declared
                raise VideoError(f"the header says {w}x{h} but frames decode at {frame.shape[1]}x{frame.shape[0]}")
            self.index += 1
            self.frame = frame
        if self.frame.shape[1::-1] != self.size:
            self.frame = cv2.resize(self.frame, self.size, interpolation=cv2.INTER_AREA)
        return self.frame

    def close(self) -> None:
        self.frames.close()


def ingest_rows(job: IngestJob, res: IngestResult, asset_key: str, run_id: str, partition: str = "",
                theme: str | None = None, cost: Cost | None = None) -> tuple[list[ArtifactRow], list[tuple[str, str, str]]]:
    """The lineage rows of one ingest: the `source_file` record and its clips, with their edges; a
    fresh ingest's `cost` is split evenly among the record and its clips (core.costs)."""
    rec = res.record
    cost = split_cost(cost, 1 + len(res.clips)) if cost is not None and res.fresh else None
    rows = [ArtifactRow(
        id=rec.id, kind="source_file", asset_key=asset_key, partition=partition, clip_id=job.clip_id, theme=theme,
        uri=absolute_path(Path(job.path)).as_uri(), content_hash=rec.info["sha256"],
        bytes=Path(job.path).stat().st_size if Path(job.path).is_file() else None,
        code_version=CODE_VERSION, params=rec.params, run_id=run_id, status=res.status,
        reason=rec.info["reason"], info={k: rec.info[k] for k in ("origin", "clips")}, fresh=res.fresh, cost=cost)]
    edges = []
    for clip in res.clips:
        rows.append(ArtifactRow(
            id=clip.id, kind="source_clip", asset_key=asset_key, partition=partition, clip_id=clip.info["clip_id"],
            theme=theme, uri=clip.uri, bytes=clip.bytes, content_hash=clip.content_hash, code_version=CODE_VERSION,
            params=clip.params, run_id=run_id, info=clip.info, fresh=res.fresh, cost=cost))
        edges.append((clip.id, rec.id, "source"))
    return rows, edges


def failed_ingest_row(job: IngestJob, error: str, asset_key: str, run_id: str, partition: str = "",
                      theme: str | None = None, cost: Cost | None = None) -> ArtifactRow:
    """The row of an ingest that raised unexpectedly (recorded, counted, retried next run)."""
    return ArtifactRow(id=artifact_id("source_file", {"path": job.path}, CODE_VERSION, job.params), kind="source_file",
                       asset_key=asset_key, partition=partition, clip_id=job.clip_id, theme=theme,
                       uri=absolute_path(Path(job.path)).as_uri(), code_version=CODE_VERSION, params=job.params,
                       run_id=run_id, status="failed", reason=error, cost=cost)
