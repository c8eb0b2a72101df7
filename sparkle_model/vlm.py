"""Vision-language models: an OpenAI-compatible endpoint or a local transformers model.

Both expose ``generate(prompt, images, videos=None) -> str``. They write instructions
(`instruction_prompt`), score edits EditScore-style (`edit_score_prompt`) and judge videos; replies
are parsed by the caller (`parse_json_reply` for JSON objects). Nothing here downloads anything: a
local model loads with ``local_files_only=True`` from `model_dir`, an endpoint is called at its
base URL.

Where an endpoint is and which environment variable holds its key are read in ONE place,
`endpoint_settings()`, from the environment: never from run config, so nobody with the UI can point
the key at another host. The client never follows redirects (the key goes to the configured host
only) and never logs or stores the key.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .taxonomy import Scene

ENV_URL = "SPARKLE_VLM_URL"
ENV_KEY_NAME = "SPARKLE_VLM_API_KEY_ENV"
ENV_AZURE_API_VERSION = "SPARKLE_VLM_AZURE_API_VERSION"
DEFAULT_KEY_ENV = "SPARKLE_VLM_API_KEY"
MAX_VIDEO_BYTES = 64 * 1024 * 1024  # per video part; inline base64 requests past this are refused
LOCAL_VIDEO_FRAMES = 8  # frames sampled from each video for a local model


class VlmError(RuntimeError):
    """The VLM could not be reached, loaded, or gave no usable answer."""


def endpoint_settings(environ=None) -> dict:
    """The endpoint's address, key variable and Azure API version, from the environment only:
    ``SPARKLE_VLM_URL``, ``SPARKLE_VLM_API_KEY_ENV`` (the NAME of the variable holding the key,
    default ``SPARKLE_VLM_API_KEY``) and ``SPARKLE_VLM_AZURE_API_VERSION`` (set: Azure OpenAI)."""
    environ = os.environ if environ is None else environ
    return {"base_url": environ.get(ENV_URL, ""), "api_key_env": environ.get(ENV_KEY_NAME) or DEFAULT_KEY_ENV,
            "azure_api_version": environ.get(ENV_AZURE_API_VERSION, "")}


def image_data_url(rgb: np.ndarray, max_side: int = 768) -> str:
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1:
        rgb = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def _video_bytes(video: str | os.PathLike | bytes) -> bytes:
    if isinstance(video, bytes):
        data = video
    else:
        path = Path(video)
        if not path.is_file():
            raise VlmError(f"video {path} is not a file")
        if path.stat().st_size > MAX_VIDEO_BYTES:
            raise VlmError(f"video {path} is larger than {MAX_VIDEO_BYTES >> 20} MiB")
        data = path.read_bytes()
    if len(data) > MAX_VIDEO_BYTES:
        raise VlmError(f"a video part is larger than {MAX_VIDEO_BYTES >> 20} MiB")
    return data


def video_data_url(video: str | os.PathLike | bytes) -> str:
    """An mp4 file (path or bytes) as a ``data:video/mp4;base64,`` URL, as Sparkle's eval sends it."""
    return "data:video/mp4;base64," + base64.b64encode(_video_bytes(video)).decode()


def chat_content(prompt: str, images: Sequence[np.ndarray], videos: Sequence = ()) -> list[dict]:
    """One user message's parts: the images, the prompt, then the videos. Videos go after the text
    as `image_url` parts with a `data:video/mp4` URL, exactly as Sparkle's official
    `eval_sparkle_bench_gemini.py` sends them (its rubric ends with "Below are the videos ...")."""
    parts = [{"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in images]
    parts.append({"type": "text", "text": prompt})
    parts += [{"type": "image_url", "image_url": {"url": video_data_url(v)}} for v in videos]
    return parts


class EndpointVlm:
    """A chat-completions endpoint (OpenAI, vLLM, SGLang, or Azure OpenAI with `azure_api_version`)
    through the `openai` client: temperature 0, seed 42, `timeout` seconds a request, `retries`
    attempts in all (the client's exponential backoff on connection errors, 408/409/429 and 5xx),
    redirects refused. The key is read from the environment variable `api_key_env` at each call."""

    def __init__(self, base_url: str, model: str, api_key_env: str = DEFAULT_KEY_ENV,
                 timeout: float = 60.0, retries: int = 3, azure_api_version: str = ""):
        if not base_url:
            raise VlmError(f"the VLM endpoint is not set: set {ENV_URL} to an OpenAI-compatible base URL")
        if not model:
            raise VlmError("vlm.model is empty: set it (or SPARKLE_VLM_MODEL) to the endpoint's model name")
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.timeout, self.retries, self.azure_api_version = float(timeout), max(1, int(retries)), azure_api_version

    @classmethod
    def from_environment(cls, model: str, **kwargs) -> "EndpointVlm":
        """The endpoint named by `endpoint_settings()`."""
        return cls(model=model, **endpoint_settings(), **kwargs)

    def _client(self):
        import httpx2
        import openai

        key = os.environ.get(self.api_key_env) or None
        # our own transport: never follow a redirect, so the key cannot be sent to its target
        http = httpx2.Client(follow_redirects=False, timeout=httpx2.Timeout(self.timeout, connect=min(10.0, self.timeout)))
        # only the key: no organization / project ids from OPENAI_* variables
        headers = {"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()}
        common = dict(timeout=self.timeout, max_retries=self.retries - 1, http_client=http)
        if self.azure_api_version:
            if key is None:
                http.close()
                raise VlmError(f"Azure OpenAI needs a key: set the environment variable {self.api_key_env}")
            return openai.AzureOpenAI(azure_endpoint=self.base_url, api_version=self.azure_api_version,
                                      api_key=key, default_headers=headers, **common)
        return openai.OpenAI(base_url=self.base_url, api_key=key or "unused", default_headers=headers, **common)

    def generate(self, prompt: str, images: Sequence[np.ndarray], videos: Sequence | None = None) -> str:
        """The reply's text to one user message of `images`, `prompt` and `videos` (mp4 paths or bytes)."""
        import openai

        messages = [{"role": "user", "content": chat_content(prompt, images, videos or ())}]
        client = self._client()
        # an endpoint without a key (a local vLLM): no Authorization header at all
        extra = {} if os.environ.get(self.api_key_env) else {"Authorization": openai.Omit()}
        try:
            reply = client.chat.completions.create(model=self.model, messages=messages, temperature=0, seed=42,
                                                   extra_headers=extra)
        except openai.APIStatusError as exc:
            status = exc.response.status_code
            if 300 <= status < 400:
                raise VlmError(f"VLM endpoint {self.base_url} answered HTTP {status} redirecting to "
                               f"{exc.response.headers.get('location', '?')!r}: redirects are refused so the key "
                               f"goes nowhere else; set {ENV_URL} to the final address") from None
            raise VlmError(f"VLM endpoint {self.base_url} failed after {self.retries} tries: HTTP {status}: "
                           f"{exc.response.text[:200]!r}") from None
        except openai.APIError as exc:
            raise VlmError(f"VLM endpoint {self.base_url} failed after {self.retries} tries: "
                           f"{type(exc).__name__}: {exc}") from None
        finally:
            client.close()
        try:
            text = reply.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            raise VlmError(f"VLM endpoint {self.base_url} gave no message text: {str(reply)[:200]!r}")
        return text


def video_frames_for_model(video: str | os.PathLike | bytes, count: int = LOCAL_VIDEO_FRAMES) -> list[np.ndarray]:
    """`count` frames spread evenly over an mp4 (path or bytes), for a model that takes images."""
    from .video import VideoError, sample_frames

    try:
        if isinstance(video, bytes):
            with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
                tmp.write(_video_bytes(video))
                tmp.flush()
                return sample_frames(tmp.name, count)
        return sample_frames(video, count)
    except VideoError as exc:
        raise VlmError(f"cannot read a video for the VLM: {exc}") from None


class LocalVlm:
    """A vision-language model from a local directory (Qwen2.5-VL, Qwen3-VL, ...) via transformers.

    Videos are passed as images: `LOCAL_VIDEO_FRAMES` frames sampled evenly from each video, after
    the given images (the chat templates here take images reliably; video inputs differ by model)."""

    def __init__(self, model_dir: str, device: str = "cpu", max_new_tokens: int = 320):
        if not model_dir or not Path(model_dir).is_dir():
            raise VlmError(f"vlm.model_dir ({model_dir or 'unset'}) is not a directory: set it (or "
                           "SPARKLE_VLM_MODEL_DIR) to a local vision-language model")
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True,
                                                                 dtype="auto").to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens

    def generate(self, prompt: str, images: Sequence[np.ndarray], videos: Sequence | None = None) -> str:
        import torch
        from PIL import Image

        images = list(images) + [f for v in videos or () for f in video_frames_for_model(v)]
        content = [{"type": "image", "image": Image.fromarray(im)} for im in images]
        messages = [{"role": "user", "content": content + [{"type": "text", "text": prompt}]}]
        inputs = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]


def parse_json_reply(text: str, required: tuple[str, ...]) -> dict:
    """The first JSON object in a reply that has every required key."""
    for match in re.finditer(r"\{.*?\}", text, flags=re.S):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and all(k in obj for k in required):
            return obj
    raise VlmError(f"no JSON object with {', '.join(required)} in the reply: {text[:200]!r}")


def instruction_prompt(theme_name: str, scene: Scene) -> str:
    return (
        "You write instructions for video background replacement. The image is the first frame of a "
        "fixed-camera video. Keep every foreground subject exactly as filmed; only the background changes.\n"
        f"Theme: {theme_name}. Target scene ({scene.keyword}): {scene.looks}. Lighting: {scene.lighting}. "
        f"Things that must move in the new background: {', '.join(scene.motion)}.\n"
        "Reply with one JSON object: {\"instruction\": a single imperative instruction of 150-470 characters "
        "that starts with a verb such as Shift, Place, Move, Put or Set, describes the new background and its "
        "lighting, and names its natural motion vividly; \"original_scene\": one sentence describing the "
        "current frame's subject and background}."
    )


def edit_score_prompt(instruction: str, what: str) -> str:
    """EditScore-style rubric (0-10 each). `what` names the edit being judged."""
    return (
        f"You judge an image edit: {what}. The first image is the input, the second the result. "
        f"Instruction: {instruction}\n"
        "Score from 0 to 10: prompt_following (does the result do what the instruction asks), consistency "
        "(is everything the instruction does not ask to change, above all the foreground subject, unchanged), "
        "perceptual_quality (is the result natural and free of artifacts). Reply with one JSON object "
        "{\"prompt_following\": n, \"consistency\": n, \"perceptual_quality\": n, \"reasoning\": \"...\"}."
    )


def overall_score(prompt_following: float, consistency: float, perceptual_quality: float) -> float:
    """VIEScore/EditScore's overall: sqrt(min(semantic scores) * quality), on 0-10."""
    return round(float(np.sqrt(max(0.0, min(prompt_following, consistency)) * max(0.0, perceptual_quality))), 3)


def vlm_edit_score(vlm, before: np.ndarray, after: np.ndarray, instruction: str, what: str) -> dict:
    reply = parse_json_reply(vlm.generate(edit_score_prompt(instruction, what), [before, after]),
                             ("prompt_following", "consistency", "perceptual_quality"))
    try:
        scores = {k: float(np.clip(float(reply[k]), 0, 10)) for k in ("prompt_following", "consistency",
                                                                    "perceptual_quality")}
    except (TypeError, ValueError) as exc:
        raise VlmError(f"non-numeric score in VLM reply {reply!r}") from exc
    return {**scores, "overall": overall_score(**scores), "reasoning": str(reply.get("reasoning", ""))[:500],
            "scorer": "vlm"}
