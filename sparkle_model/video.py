"""Video and image files in and out: probing, decoding, H.264 writing (atomic), clip normalisation, PNG.

Decoding uses OpenCV (the fastest decoder here); encoding uses the ffmpeg binary shipped in
imageio-ffmpeg (libx264, yuv420p), since OpenCV cannot write H.264. Frames are RGB uint8 arrays.

Headers are untrusted: `probe` refuses files whose declared size, duration or pixels x frames are
absurd before anything is allocated from them (`MAX_*` below), `check_file` says what a path that is
not a regular file is, and `decode_check` decodes only the frames a caller needs with a decoder that
reports errors (corrupt bytes, a stream that contradicts its header).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MIN_SIDE = 32
MAX_SIDE = 8192
MAX_ASPECT = 8.0
MAX_FPS = 240.0
MAX_FILE_BYTES = 16 << 30  # 16 GiB
MAX_DURATION_S = 4 * 3600.0  # as declared: frames / fps
MAX_FRAMES = 1_000_000  # a declared frame count above this is refused, never used to size anything
MAX_PIXEL_FRAMES = 4 * 10 ** 12  # declared width x height x frames (4K at 30 fps for ~4 h)


class VideoError(ValueError):
    """A file that is not a usable video; the message says why (it becomes a quarantine reason)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # as declared by the container (0 if unknown); decode_check counts the real number


def check_file(path: str | os.PathLike) -> int:
    """The size of a regular, readable, non-empty file; a VideoError saying what it is otherwise
    (missing, a broken or looping symlink, a directory, a device or pipe, unreadable, empty, huge)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VideoError("a symlink loop, not a video file") from None
        if exc.errno == errno.ENOENT and path.is_symlink():
            raise VideoError(f"a broken symlink (to {os.readlink(path)}), not a video file") from None
        if exc.errno == errno.ENOENT:
            raise VideoError("file not found") from None
        raise VideoError(f"cannot read it: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoError("a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoError("not a regular file (a device, pipe or socket)")
    if not os.access(path, os.R_OK):
        raise VideoError("cannot read it: permission denied")
    if st.st_size == 0:
        raise VideoError("empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise VideoError(f"too large: {st.st_size / 2 ** 30:.1f} GiB (the limit is {MAX_FILE_BYTES >> 30} GiB)")
    return st.st_size


def probe(path: str | os.PathLike) -> VideoInfo:
    """Container facts, with a VideoError for files that are not videos or whose header is absurd."""
    check_file(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError("not a readable video (no decoder could open it)")
        width, height = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        fps, frames = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()
    finite = [v if np.isfinite(v) else -1.0 for v in (width, height, fps, frames)]
    info = VideoInfo(width=int(finite[0]), height=int(finite[1]), fps=float(finite[2] if finite[2] > 0 else 0.0),
                     frames=int(min(max(finite[3], 0), 2 ** 62)))
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
    if info.frames > MAX_FRAMES or info.frames / info.fps > MAX_DURATION_S:
        raise VideoError(f"absurd header: it declares {info.frames} frames ({info.frames / info.fps / 3600:.1f} h "
                         f"at {info.fps:g} fps; the limits are {MAX_FRAMES} frames and {MAX_DURATION_S / 3600:g} h)")
    if info.width * info.height * info.frames > MAX_PIXEL_FRAMES:
        raise VideoError(f"absurd header: {info.width}x{info.height} x {info.frames} frames is more than "
                         f"{MAX_PIXEL_FRAMES:.0e} pixels")
    return info


def decode_check(path: str | os.PathLike, max_frames: int, timeout: float | None = None) -> int:
    """Decode up to `max_frames` frames of the first video stream with ffmpeg, which reports what
    OpenCV conceals (damaged packets, a picture size that contradicts the stream); returns how many
    frames decoded, or raises a VideoError quoting the decoder's first errors. Nothing is kept in
    memory: frames go to ffmpeg's null output."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
           "-frames:v", str(int(max_frames)), "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VideoError(f"decoding {max_frames} frames took longer than {timeout:.0f} s") from None
    errors = [line.split("] ")[-1].strip() for line in done.stderr.splitlines() if line.strip()]
    if errors or done.returncode != 0:
        shown = "; ".join(dict.fromkeys(errors[:6])) or f"ffmpeg exit status {done.returncode}"
        raise VideoError(f"corrupt: decoder errors: {shown[:300]}")
    counts = [int(line.split("=", 1)[1]) for line in done.stdout.splitlines()
              if line.startswith("frame=") and line.split("=", 1)[1].strip().isdigit()]
    return counts[-1] if counts else 0


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decode every frame as RGB uint8 (H, W, 3)."""
    for _, frame in _decode(path):
        yield frame


def _decode(path: str | os.PathLike, wanted: Container[int] | None = None,
            last: int | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode frames in order: (index, RGB frame) for the indices in `wanted` (all when None) and
    (index, None) for the others, which are decoded (later frames depend on them) but never
    retrieved nor converted; stops after index `last`."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"cannot open {path}")
    try:
        index = 0
        while (last is None or index <= last) and cap.grab():
            if wanted is None or index in wanted:
                ok, bgr = cap.retrieve()
                if not ok:
                    return
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            else:
                yield index, None
            index += 1
    finally:
        cap.release()


def first_frame(path: str | os.PathLike) -> np.ndarray:
    """Frame 0 of a video (decodes only that frame)."""
    for _, frame in _decode(path, last=0):
        return frame
    raise VideoError(f"{Path(path).name} has no frames")


def sample_frames(path: str | os.PathLike, count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over a video; decoding stops after the last one needed (the
    declared frame count has passed `probe`'s limits; it sizes nothing but the index list)."""
    declared = probe(path).frames
    wanted = sorted({int(i) for i in np.linspace(0, declared - 1, count).round()}) if declared > 0 else list(range(count))
    out = list(read_frames(path, wanted).values())
    if not out:
        raise VideoError(f"no decodable frames in {path}")
    return out


def read_frames(path: str | os.PathLike, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """The frames at `indices`, in index order (one decoding pass up to the last one asked for, only
    those converted); indices past the end are absent."""
    wanted = set(indices)
    if not wanted:
        return {}
    return {i: frame for i, frame in _decode(path, wanted, last=max(wanted)) if frame is not None}


class FramesAt(Sequence):
    """A decoded video's length and only its frames at chosen indices (`frames_at`): what a reader
    that looks at a few frames needs, without holding the whole video. A slice is a FramesAt of
    the frames it covers; reading (or iterating over) a frame that was not kept raises IndexError."""

    def __init__(self, length: int, frames: dict[int, np.ndarray]):
        self.length, self.frames = length, frames

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        if isinstance(i, slice):
            span = range(*i.indices(self.length))
            return FramesAt(len(span), {j: self.frames[k] for j, k in enumerate(span) if k in self.frames})
        if i not in self.frames:
            raise IndexError(f"frame {i} was not kept (kept: {sorted(self.frames)})")
        return self.frames[i]

    def __iter__(self):
        for i in range(self.length):
            yield self[i]


def frames_at(path: str | os.PathLike, indices: Iterable[int]) -> FramesAt:
    """Every frame decoded (to count them), only the ones at `indices` converted and kept."""
    kept, last = {}, -1
    for last, frame in _decode(path, set(indices)):
        if frame is not None:
            kept[last] = frame
    if last < 0:
        raise VideoError(f"no decodable frames in {path}")
    return FramesAt(last + 1, kept)


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first max_frames) as one (T, H, W, 3) uint8 array."""
    frames = []
    for frame in iter_frames(path):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise VideoError(f"no decodable frames in {path}")
    out = np.empty((len(frames), *frames[0].shape), frames[0].dtype)
    for i in range(len(frames)):  # each decoded frame freed once copied: the video is held once, not twice
        out[i], frames[i] = frames[i], None
    return out


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
