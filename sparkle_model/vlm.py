"""Vision-language models: an OpenAI-compatible endpoint or a local transformers model.

Both expose ``generate(prompt, images) -> str``. They write instructions (`instruction_prompt`)
and score edits EditScore-style (`edit_score_prompt`); replies are JSON objects, parsed by
`parse_json_reply`. Nothing here downloads anything: a local model loads with
``local_files_only=True`` from `model_dir`, an endpoint is called at `base_url`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from .taxonomy import Scene


class VlmError(RuntimeError):
    """The VLM could not be reached, loaded, or gave no usable answer."""


def image_data_url(rgb: np.ndarray, max_side: int = 768) -> str:
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1:
        rgb = cv2.resize(rgb, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


class EndpointVlm:
    """A chat-completions endpoint (OpenAI, vLLM, SGLang, Azure-compatible gateways)."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "SPARKLE_VLM_API_KEY",
                 timeout: float = 60.0, retries: int = 3):
        if not base_url:
            raise VlmError("vlm.base_url is empty: set it (or SPARKLE_VLM_URL) to an OpenAI-compatible endpoint")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env, self.timeout, self.retries = model, api_key_env, timeout, retries

    def generate(self, prompt: str, images: list[np.ndarray]) -> str:
        content = [{"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in images]
        body = {"model": self.model, "temperature": 0, "seed": 42,
                "messages": [{"role": "user", "content": content + [{"type": "text", "text": prompt}]}]}
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers)
        last = None
        for attempt in range(self.retries):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read())
                return reply["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
                if exc.code < 500 and exc.code != 429:
                    break
            except (urllib.error.URLError, TimeoutError, KeyError, IndexError, json.JSONDecodeError) as exc:
                last = repr(exc)
            time.sleep(min(8.0, 0.5 * 2 ** attempt))
        raise VlmError(f"VLM endpoint {self.url} failed after {self.retries} tries: {last}")


class LocalVlm:
    """A vision-language model from a local directory (Qwen2.5-VL, Qwen3-VL, ...) via transformers."""

    def __init__(self, model_dir: str, device: str = "cpu", max_new_tokens: int = 320):
        if not model_dir or not Path(model_dir).is_dir():
            raise VlmError(f"vlm.model_dir ({model_dir or 'unset'}) is not a directory: set it (or "
                           "SPARKLE_VLM_MODEL_DIR) to a local vision-language model")
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True,
                                                                 dtype="auto").to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens

    def generate(self, prompt: str, images: list[np.ndarray]) -> str:
        import torch
        from PIL import Image

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
