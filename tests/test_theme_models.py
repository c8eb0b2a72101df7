"""Stage 2-3 building blocks without Dagster: taxonomy, instructions, scenes, scores, animation,
the diffusers backends (tiny random weights) and the VLM endpoint client."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from sparkle_bench.metrics import background_motion
from sparkle_model.background_animation import animate
from sparkle_model.diffusion import DiffusersAnimator, DiffusersEditor, DiffusionError
from sparkle_model.edit_scores import score_edit, score_plate
from sparkle_model.first_frame_edit import background_layer, edit_first_frame, erase_foreground
from sparkle_model.instructions import MAX_CHARS, MIN_CHARS, plan_instructions, write_instruction
from sparkle_model.scene_grade import clean_background
from sparkle_model.scene_render import render_scene
from sparkle_model.taxonomy import MOTION_CUES, TaxonomyError, load_taxonomy, parse_theme
from sparkle_model.vlm import EndpointVlm, VlmError, vlm_edit_score

from conftest import REPO

THEMES = REPO / "themes"


@pytest.fixture(scope="module")
def taxonomy():
    themes, errors = load_taxonomy(THEMES)
    assert not errors
    return themes


def test_shipped_taxonomy(taxonomy):
    assert sorted(taxonomy) == ["location", "season", "style", "time"]
    assert sum(len(t.subthemes) for t in taxonomy.values()) == 22
    for theme in taxonomy.values():
        for scene in theme.scenes:
            assert set(scene.motion) <= set(MOTION_CUES) and scene.looks and scene.lighting
            assert scene.keyword == f"{scene.subtheme}: {scene.name}"
    assert parse_theme(REPO / "examples" / "themes" / "weather.yaml").name == "weather"


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["subthemes"][0]["scenes"][0].pop("lighting"), "subthemes[0].scenes[0].lighting: missing field"),
    (lambda d: d["subthemes"][0]["scenes"].append(dict(d["subthemes"][0]["scenes"][0])),
     "subthemes[0].scenes[3].name: duplicate scene name"),
    (lambda d: d["subthemes"].append(dict(d["subthemes"][1])), "subthemes[7].name: duplicate subtheme name"),
    (lambda d: d["subthemes"][1]["scenes"][0]["motion"].append("lava"), "subthemes[1].scenes[0].motion[3]: unknown motion cue 'lava'"),
    (lambda d: d["subthemes"][0]["scenes"][1]["layout"].update(sky="purple"), "subthemes[0].scenes[1].layout.sky"),
    (lambda d: d.update(name="Location!"), "name: must be lower-case"),
    (lambda d: d.pop("subthemes"), "subthemes: missing field"),
])
def test_bad_theme_files_name_file_and_field(tmp_path, edit, where):
    import yaml

    data = yaml.safe_load((THEMES / "location.yaml").read_text())
    edit(data)
    path = tmp_path / "location.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TaxonomyError) as err:
        parse_theme(path)
    assert str(err.value).startswith(f"{path}: ") and where in str(err.value)
    themes, errors = load_taxonomy(tmp_path)
    assert not themes and where in errors["location.yaml"]


def test_instructions_are_seeded_varied_and_long_enough(taxonomy):
    for theme in taxonomy.values():
        clips = [f"clip_{i:03d}" for i in range(120)]
        plans = plan_instructions(theme, clips, seed=7)
        assert plans == plan_instructions(theme, clips, seed=7)
        texts = [write_instruction(p, theme.openers) for p in plans]
        assert all(MIN_CHARS <= len(t) <= MAX_CHARS for t in texts), min(map(len, texts))
        for a, b in zip(plans, plans[1:]):
            assert a.opener != b.opener and a.structure != b.structure
        assert len(set(texts)) > 100 and len({p.scene.name for p in plans}) >= len(theme.scenes) * 0.8
        other = [write_instruction(p, theme.openers) for p in plan_instructions(theme, clips, seed=8)]
        assert sum(a != b for a, b in zip(texts, other)) > 100
    # every motion cue of the scene is named
    plan = plan_instructions(taxonomy["location"], ["x"], 0)[0]
    assert len(write_instruction(plan, taxonomy["location"].openers)) > MIN_CHARS


def test_every_location_scene_looks_different(taxonomy):
    images = [render_scene(s.layout, 72, 128, seed=1).image.astype(np.float32) for s in taxonomy["location"].scenes]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 6, (i, j)
    r = render_scene(taxonomy["location"].scenes[0].layout, 72, 128, seed=1)
    assert r.regions["sky"].mean() > 0.1 and r.regions["water"].mean() > 0.1


def _scene_clip(n=9, h=72, w=128):
    rng = np.random.default_rng(0)
    bg = (rng.random((h, w, 3)) * 120 + 60).astype(np.uint8)
    frames, masks = [], []
    for t in range(n):
        f = bg.copy()
        m = np.zeros((h, w), bool)
        m[20:60, 40 + t:70 + t] = True
        f[m] = (200, 60, 50)
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def test_edit_plate_and_scores(taxonomy):
    frames, masks = _scene_clip()
    clean = clean_background(frames, masks)
    assert np.abs(clean.astype(int) - frames[0].astype(int))[~masks[0]].mean() < 3  # background recovered
    for name in ("location", "time"):
        theme = taxonomy[name]
        layer = background_layer(theme.scenes[0], theme.render, clean, seed=3)
        edited = edit_first_frame(frames[0], masks[0], layer)
        score = score_edit(frames[0], edited, masks[0])
        assert score["consistency"] > 8 and score["prompt_following"] > 5, score
        plate = erase_foreground(edited, masks[0], layer)
        assert score_plate(edited, plate, masks[0])["overall"] >= 8.5
        # a plate that still holds the foreground fails; an edit that changes nothing fails
        assert score_plate(edited, edited, masks[0])["prompt_following"] < 3
    unchanged = score_edit(frames[0], frames[0], masks[0])
    assert unchanged["prompt_following"] == 0 and unchanged["overall"] == 0


def test_background_animation_moves_and_never_loops(taxonomy):
    scene = next(s for s in taxonomy["location"].scenes if s.name == "mountain lake at dawn")
    r = render_scene(scene.layout, 72, 128, seed=2)
    anim, frames = animate(r.image, r.regions, r.lights, scene.motion + ("snow",), 17, 16.0, seed=2)
    frames = np.stack(list(frames))
    assert anim.applied == ["water", "fog", "foliage", "snow"] and not anim.skipped
    moving = background_motion(frames, 16.0)
    still = background_motion(np.stack([r.image] * 17), 16.0)
    assert still["score"] == 0 and still["still_pairs"] == 1
    assert moving["score"] > 0.05 and moving["still_pairs"] == 0
    assert all(np.abs(frames[0].astype(int) - f.astype(int)).mean() > 0.5 for f in frames[4:])
    anim, _ = animate(r.image, {"sky": np.zeros((72, 128))}, [], ("clouds", "traffic"), 3, 16.0, seed=2)
    assert anim.skipped == {"clouds": "no sky in the plate", "traffic": "no road in the plate"}


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    from tiny_models import build_tiny_inpaint, build_tiny_wan_i2v

    root = tmp_path_factory.mktemp("tiny")
    return build_tiny_inpaint(root / "inpaint"), build_tiny_wan_i2v(root / "wan_i2v")


def test_diffusers_backends_with_tiny_random_weights(tiny_pipelines):
    """Plumbing only: the real pipelines load from a directory and run; their pictures are noise."""
    inpaint_dir, i2v_dir = tiny_pipelines
    frames, masks = _scene_clip()
    editor = DiffusersEditor(str(inpaint_dir), steps=2, max_side=64)
    assert editor.inpaints
    out = editor.edit(frames[0], "the sky and water", seed=1, repaint=~masks[0])
    assert out.shape == frames[0].shape and out.dtype == np.uint8
    video = DiffusersAnimator(str(i2v_dir), steps=2, max_side=64).animate(frames[0], "water", 9, seed=1)
    assert video.shape == (9, 72, 128, 3)
    with pytest.raises(DiffusionError, match="edit_backend.model_dir"):
        DiffusersEditor(str(i2v_dir.parent / "missing"))
    with pytest.raises(DiffusionError, match="not an image-to-video pipeline"):
        DiffusersAnimator(str(inpaint_dir))


class FakeChatServer:
    """A local OpenAI-compatible chat endpoint answering with canned JSON (records the requests).
    With `redirect_to` it answers every request with a redirect (`status`) to that URL instead."""

    def __init__(self, reply: dict, redirect_to: str | None = None, status: int = 302):
        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                requests.append({"path": self.path, "body": json.loads(raw) if raw else None,
                                 "auth": self.headers.get("Authorization"), "api_key": self.headers.get("api-key")})
                if redirect_to:
                    self.send_response(status)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps({"choices": [{"message": {"content": "Sure:\n" + json.dumps(reply)}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # urllib used to follow a 302 as a GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_vlm_endpoint_client(monkeypatch):
    server = FakeChatServer({"prompt_following": 9, "consistency": 8, "perceptual_quality": 7, "reasoning": "ok"})
    try:
        monkeypatch.setenv("SPARKLE_VLM_API_KEY", "secret")
        frames, _ = _scene_clip()
        score = vlm_edit_score(EndpointVlm(server.url, "judge"), frames[0], frames[1], "do it", "an edit")
        assert score["overall"] == pytest.approx(np.sqrt(8 * 7), abs=1e-3) and score["scorer"] == "vlm"
        req = server.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer secret"
        content = req["body"]["messages"][0]["content"]
        assert [c["type"] for c in content] == ["image_url", "image_url", "text"]
        assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert req["body"]["temperature"] == 0 and req["body"]["seed"] == 42
        # videos go after the prompt as data:video/mp4 parts, as Sparkle's eval script sends them
        monkeypatch.delenv("SPARKLE_VLM_API_KEY")
        EndpointVlm(server.url, "judge").generate("judge these", [], videos=[b"mp4-one", b"mp4-two"])
        req = server.requests[1]
        assert req["auth"] is None  # no key configured: no Authorization header at all
        content = req["body"]["messages"][0]["content"]
        assert [c["type"] for c in content] == ["text", "image_url", "image_url"]
        assert content[2]["image_url"]["url"] == "data:video/mp4;base64," + base64.b64encode(b"mp4-two").decode()
        # Azure OpenAI: deployment path, api-version query, api-key header
        monkeypatch.setenv("SPARKLE_VLM_API_KEY", "azkey")
        EndpointVlm(server.url, "judge", azure_api_version="2024-03-01-preview").generate("hi", [])
        req = server.requests[2]
        assert req["path"] == "/v1/openai/deployments/judge/chat/completions?api-version=2024-03-01-preview"
        assert req["api_key"] == "azkey" and req["auth"] is None
    finally:
        server.close()
    with pytest.raises(VlmError, match="failed after 1 tries"):
        EndpointVlm(server.url, "judge", retries=1, timeout=2).generate("hi", [])
