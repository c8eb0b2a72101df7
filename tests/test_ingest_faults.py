"""Malformed inputs at ingest (issues 10 and 11), each made the way it was found: a forged AVI
header, random bytes in the middle of an mp4, a header that lies about the picture size, a
spreadsheet CSV with a byte-order mark, a symlink loop and a directory named like a video. Each is
quarantined with its reason next to a good clip, and the run succeeds."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import dagster as dg
import numpy as np

from sparkle_assets.core.lineage import Lineage
from sparkle_assets.core.resources import (ArtifactStoreResource, ClipExecutorResource, LineageResource,
                                           SourcesResource)
from sparkle_assets.stages.per_clip.source_clips import source_clips

from conftest import REPO, make_clip

FORGED_FRAMES = 2 ** 31 - 1


def forged_avi(path: Path, declared: int = FORGED_FRAMES) -> Path:
    """A ~15 KB MJPG AVI of 16 real frames whose header (avih and strh) declares `declared` frames,
    with its index renamed away so the demuxer has only the header to go by."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 16, (128, 96))
    for t in range(16):
        frame = np.full((96, 128, 3), 90, np.uint8)
        frame[20:60, 10 + t:50 + t] = (30, 30, 200)
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24:avih + 28] = struct.pack("<I", declared)  # dwTotalFrames
    data[strh + 40:strh + 44] = struct.pack("<I", declared)  # dwLength
    data[data.find(b"idx1"):data.find(b"idx1") + 4] = b"JUNK"
    path.write_bytes(bytes(data))
    return path


def corrupt_middle(src: Path, dst: Path) -> Path:
    """`src` with 16 random bytes written into its middle (OpenCV still decodes every frame)."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * 0.3)
    data[start:start + 16] = np.random.default_rng(0).integers(0, 256, 16, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def huge_header(src: Path, dst: Path) -> Path:
    """`src` whose sample description (stsd/avc1) claims 20000x20000."""
    data = bytearray(src.read_bytes())
    avc1 = data.find(b"avc1", data.find(b"stsd"))
    data[avc1 + 28:avc1 + 32] = struct.pack(">HH", 20000, 20000)
    dst.write_bytes(bytes(data))
    return dst


def test_malformed_inputs_are_quarantined_and_the_run_succeeds(home, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    good = make_clip(videos / "good.mp4", frames=45, size=(128, 96), seed=5)
    assert cv2.VideoCapture(str(forged_avi(videos / "forged.avi"))).get(cv2.CAP_PROP_FRAME_COUNT) == FORGED_FRAMES
    corrupt_middle(good, videos / "middle.mp4")
    huge_header(good, videos / "huge.mp4")
    (videos / "folder.mp4").mkdir()
    os.symlink("loop_b.mp4", videos / "loop_a.mp4")
    os.symlink("loop_a.mp4", videos / "loop_b.mp4")
    rows = ["good", "forged.avi", "middle", "huge", "folder", "loop_a", "missing"]
    paths = {"good": "good.mp4", "middle": "middle.mp4", "huge": "huge.mp4", "folder": "folder.mp4",
             "loop_a": "loop_a.mp4", "missing": "missing.mp4", "forged.avi": "forged.avi"}
    # written by a spreadsheet: a UTF-8 byte-order mark before the header
    (videos / "pairs.csv").write_bytes(b"\xef\xbb\xbf" + ("prompt,src_video,tgt_video,task\n" + "".join(
        f"make it snow,{paths[r]},,{r.split('.')[0]}\n" for r in rows)).encode())

    resources = {"artifact_store": ArtifactStoreResource(home=str(home)), "lineage": LineageResource(home=str(home)),
                 "sources": SourcesResource(csv_files=[str(videos / "pairs.csv")], bundled=False),
                 "clip_executor": ClipExecutorResource(kind="in_process")}
    result = dg.materialize([source_clips], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    lineage = Lineage(home / "lineage.duckdb")
    reasons = {r["clip_id"]: r["reason"] for r in lineage.query("SELECT clip_id, reason FROM quarantine")}
    assert [c["clip_id"] for c in lineage.current_artifacts("source_clips", kind="source_clip")] == ["good"]
    assert "absurd header" in reasons["forged"] and str(FORGED_FRAMES) in reasons["forged"]
    assert reasons["middle"].startswith("corrupt: decoder errors")
    assert "20000x20000" in reasons["huge"]
    assert reasons["folder"] == "a directory, not a video file"
    assert reasons["loop_a"] == "a symlink loop, not a video file"
    assert reasons["missing"] == "file not found"
    counts = json.loads(lineage.query("SELECT summary FROM materialization WHERE run_id = ?",
                                      [result.run_id])[0]["summary"])
    assert counts["quarantined"] == 6 and counts["failed"] == 0 and counts["clips"] == 1

    # a quarantined file is keyed by its content: the next run reuses the verdict, decoding nothing
    again = dg.materialize([source_clips], resources=resources, instance=dg.DagsterInstance.ephemeral())
    rerun = json.loads(lineage.query("SELECT summary FROM materialization WHERE run_id = ?",
                                     [again.run_id])[0]["summary"])
    assert rerun["quarantined"] == 6 and rerun["reused"] == 1 and rerun["computed"] == 0


RSS_PROBE = r"""
import json, resource, sys
from pathlib import Path
from sparkle_assets.stages.per_clip.source_clips import IngestJob, SourceClipsConfig, ingest_source

def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])

# the old code asked for 16 GiB here: cap the address space at what is mapped now + 1 GiB
resource.setrlimit(resource.RLIMIT_AS, ((kib("VmSize:") + (1 << 20)) * 1024,) * 2)
before = kib("VmRSS:")
params = SourceClipsConfig().model_dump()
out = {}
for path in sys.argv[2:]:
    res = ingest_source(IngestJob(sys.argv[1], path, Path(path).stem, "test", None, params))
    out[Path(path).stem] = [res.status, res.record.info["reason"]]
out["rss_before_kib"], out["peak_rss_kib"] = before, kib("VmHWM:")
print(json.dumps(out))
"""

INGEST_MEMORY_BOUND_KIB = 64 * 1024  # peak RSS growth while ingesting the forged files


def test_forged_frame_count_is_quarantined_in_bounded_memory(tmp_path):
    """Attack: a 15 KB AVI whose header claims 2^31-1 frames made the frame-index step grow to
    23.5 GB (or fail with "Unable to allocate 16.0 GiB" and be retried every run). Also a header
    that lies within the limits (100000 frames, under 2 hours): only the frames the clips need are
    decoded."""
    forged = forged_avi(tmp_path / "forged.avi")
    plausible = forged_avi(tmp_path / "plausible.avi", declared=100_000)
    assert forged.stat().st_size < 20_000
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tmp_path / "store"), str(forged), str(plausible)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["forged"][0] == "quarantined" and "absurd header" in out["forged"][1]
    assert out["plausible"][0] == "quarantined" and "truncated" in out["plausible"][1]
    print(f"ingest of the forged files: peak RSS {out['peak_rss_kib'] / 1024:.1f} MiB, "
          f"{(out['peak_rss_kib'] - out['rss_before_kib']) / 1024:.1f} MiB above the process after imports")
    assert out["peak_rss_kib"] - out["rss_before_kib"] < INGEST_MEMORY_BOUND_KIB, out
