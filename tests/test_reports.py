import numpy as np

from sparkle_assets.core.reports import pick_frames, sheet_metadata
from sparkle_model.video import read_video

from conftest import make_clip


def test_a_contact_sheet_is_drawn_once_per_content(tmp_path):
    """Frames picked from a real video; a re-run with the same rows neither decodes nor rewrites."""
    video = make_clip(tmp_path / "a.mp4", frames=9, size=(64, 48))
    decoded = []

    def frame(c):
        decoded.append(c["index"])
        return pick_frames(video, [c["index"]])[0]

    clips = {"c1": {"index": 4, "label": "x", "shows": ["v1"]}, "c2": {"index": 8, "label": "y", "shows": ["v2"]}}
    first = sheet_metadata(str(tmp_path), "t", "edited_videos", clips, [("mid", frame)])
    png = tmp_path / "contact_sheets" / "t" / "edited_videos.png"
    stamp = png.stat().st_mtime_ns
    last, past_end = pick_frames(video, [8, 9])
    assert decoded == [4, 8] and np.array_equal(last, read_video(video)[8]) and past_end is None
    again = sheet_metadata(str(tmp_path), "t", "edited_videos", clips, [("mid", frame)])
    assert decoded == [4, 8] and png.stat().st_mtime_ns == stamp
    assert again["contact_sheet"] == first["contact_sheet"]
    clips["c2"]["shows"] = ["v3"]  # another artifact in a row: drawn again
    sheet_metadata(str(tmp_path), "t", "edited_videos", clips, [("mid", frame)])
    assert decoded == [4, 8, 4, 8] and png.stat().st_mtime_ns != stamp
