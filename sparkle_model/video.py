"""Video and image files in and out: probing, decoding, H.264 writing (atomic), clip normalisation, PNG.

Decoding uses OpenCV (the fastest decoder here); encoding uses the ffmpeg binary shipped in
imageio-ffmpeg (libx264, yuv420p), since OpenCV cannot write H.264. Frames are RGB uint8 arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MIN_SIDE = 32
MAX_SIDE = 8192
MAX_ASPECT = 8.0
MAX_FPS = 240.0


class VideoError(ValueError):
    """A file that is not a usable video; the message says why (it becomes a quarantine reason)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # as declared by the container; decode_check counts the real number


def probe(path: str | os.PathLike) -> VideoInfo:
    """Container facts, with a VideoError for files that are empty, unreadable or absurd."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError("not a readable video (no decoder could open it)")
        info = VideoInfo(
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
        )
    finally:
        cap.release()
    if info.width <= 0 or info.height <= 0:
        raise VideoError("no video stream")
    if not (MIN_SIDE <= min(info.width, info.height) and max(info.width, info.height) <= MAX_SIDE):
        raise VideoError(
            f"absurd resolution {info.width}x{info.height} (each side must be in [{MIN_SIDE}, {MAX_SIDE}])"
        )
    if max(info.width, info.height) / min(info.width, info.height) > MAX_ASPECT:
        raise VideoError(f"absurd aspect ratio {info.width}x{info.height} (more than {MAX_ASPECT}:1)")
    if not (0 < info.fps <= MAX_FPS):
        raise VideoError(f"absurd frame rate {info.fps:g} fps")
    return info


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decode every frame as RGB uint8 (H, W, 3)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open {path}")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def first_frame(path: str | os.PathLike) -> np.ndarray:
    """Frame 0 of a video (decodes only that frame)."""
    for frame in iter_frames(path):
        return frame
    raise VideoError(f"{Path(path).name} has no frames")


def read_frames(path: str | os.PathLike, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The frames at `indices` (one decoding pass, only those kept); indices past the end are absent."""
    wanted = set(indices)
    out = {}
    for i, frame in enumerate(iter_frames(path)):
        if i in wanted:
            out[i] = frame
        if len(out) == len(wanted):
            break
    return out


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first max_frames) as one (T, H, W, 3) uint8 array."""
    frames = []
    for frame in iter_frames(path):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise VideoError(f"no decodable frames in {path}")
    return np.stack(frames)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, crf: int = 18) -> Path:
    """Write RGB frames as H.264 (yuv420p) mp4, atomically: a temporary name, then a rename.

    Width and height must be even (yuv420p). Returns the final path.
    """
    import imageio_ffmpeg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix or '.mp4'}")
    writer = None
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if writer is None:
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 needs even frame sizes, got {w}x{h}")
                writer = imageio_ffmpeg.write_frames(
                    str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                    output_params=["-crf", str(crf), "-preset", "veryfast", "-movflags", "+faststart"],
                )
                writer.send(None)
            writer.send(frame)
        if writer is None:
            raise ValueError("no frames to write")
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return path


def resample_indices(n_src: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Source frame index for each output frame when converting src_fps -> dst_fps."""
    n_dst = int(np.floor((n_src - 1) * dst_fps / src_fps)) + 1 if n_src else 0
    idx = np.round(np.arange(n_dst) * src_fps / dst_fps).astype(int)
    return np.clip(idx, 0, max(n_src - 1, 0))


def target_size(width: int, height: int, max_side: int, multiple: int = 16) -> tuple[int, int]:
    """Scale so the longer side is at most max_side, then round each side to a multiple of 16."""
    scale = min(1.0, max_side / max(width, height))
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


def clip_lengths(n_frames: int, max_frames: int = 81, min_frames: int = 17,
                 max_clips: int | None = None) -> list[tuple[int, int]]:
    """Cut n_frames into consecutive (start, length) clips of 4k+1 frames, each <= max_frames.

    A remainder shorter than min_frames is dropped; clips are as long as possible.
    """
    if max_frames % 4 != 1 or min_frames % 4 != 1:
        raise ValueError("max_frames and min_frames must be of the form 4k+1")
    out, start = [], 0
    while n_frames - start >= min_frames and (max_clips is None or len(out) < max_clips):
        length = min(max_frames, n_frames - start)
        length -= (length - 1) % 4
        out.append((start, length))
        start += length
    return out



def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """An RGB uint8 image as PNG (to a temporary path from the store: not atomic by itself)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VideoError(f"could not encode a PNG for {path}")
    Path(path).write_bytes(buf.tobytes())


def read_png(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8; VideoError if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f"{path} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
