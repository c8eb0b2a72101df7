"""The VLM judge: Sparkle-Bench's rubric sent to a vision-language model, its reply parsed and capped.

As the official script: one user message with the rubric (filled with the instruction), then the
source and the edited video as base64 `data:video/mp4` parts, temperature 0, seed 42 (the client,
`sparkle_model.vlm`, sends them and retries transport errors with backoff). A reply that does not
parse (`rubric.parse_reply`) is asked again up to `parse_retries` times, then recorded as
`unparseable` with the last reply: never a default score. For an endpoint that takes images only,
`media="frames"` sends `frames` frames sampled evenly from each video instead; with
`media="video"`, a request the endpoint refuses as a client error (HTTP 4xx) falls back to frames
once, and the judgment says which media was used. A local transformers model gets frames.
"""

from __future__ import annotations

import re
from pathlib import Path

from sparkle_model.vlm import VlmError, video_frames_for_model

from .rubric import FRAMES_NOTE, RUBRIC_HASH, judge_prompt, parse_reply

JUDGE_VERSION = "vlm-1"
CLIENT_ERROR = re.compile(r"HTTP 4\d\d")


class VlmJudge:
    """Judges one edit at a time with `client.generate(prompt, images, videos=...)`."""

    def __init__(self, client, model: str, media: str = "video", frames: int = 8, parse_retries: int = 3):
        if media not in ("video", "frames"):
            raise ValueError(f"media must be 'video' or 'frames', got {media!r}")
        self.client, self.model, self.media, self.frames = client, model, media, int(frames)
        self.parse_retries = max(1, int(parse_retries))

    def identity(self) -> dict:
        """What a judgment depends on besides the videos and the prompt (part of its cache key)."""
        return {"judge": "vlm", "version": JUDGE_VERSION, "model": self.model, "media": self.media,
                "frames": self.frames, "rubric": RUBRIC_HASH}

    def _ask(self, prompt: str, source: Path, output: Path, media: str) -> str:
        text = judge_prompt(prompt)
        if media == "video":
            return self.client.generate(text, [], videos=[source, output])
        images = video_frames_for_model(source, self.frames) + video_frames_for_model(output, self.frames)
        return self.client.generate(text + FRAMES_NOTE.format(n=self.frames), images)

    def judge(self, prompt: str, source: str | Path, output: str | Path) -> dict:
        """{status: ok | unparseable, scores (six capped ints or None), reply, attempts, media}. A
        transport failure raises `VlmError` (nothing is recorded as a score)."""
        media, replies = self.media, []
        for attempt in range(1, self.parse_retries + 1):
            try:
                reply = self._ask(prompt, Path(source), Path(output), media)
            except VlmError as exc:
                if media == "video" and CLIENT_ERROR.search(str(exc)):
                    media = "frames"  # an endpoint that takes images only
                    reply = self._ask(prompt, Path(source), Path(output), media)
                else:
                    raise
            replies.append(reply)
            scores = parse_reply(reply)
            if scores is not None:
                return {"status": "ok", "scores": scores, "reply": reply.strip(), "attempts": attempt, "media": media}
        return {"status": "unparseable", "scores": None, "reply": replies[-1].strip(), "attempts": len(replies),
                "media": media}
