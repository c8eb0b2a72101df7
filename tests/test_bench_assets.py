"""Sparkle-Bench in Dagster: `sparkle bench` on a tiny external bench with a model folder and an
official-JSONL folder (the table printed and written, lineage from every score to its output, system
and source), adding a system judges only that system, the VLM judge end to end against a local fake
OpenAI-compatible endpoint with recorded replies (malformed ones included), and the UI in a browser."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from browser import CHROMIUM_FLAGS, chromium, dagster_webserver
from conftest import REPO
from sparkle_assets.core.lineage import Lineage
from test_theme_assets import make_subject_clip

PROMPTS = ["Place the subject in an open prairie with tall golden grass swaying in the wind under drifting clouds",
           "Move the subject to a neon street at night with flickering signs and light rain"]
OFFICIAL = [{"id": "a", "prompt": "p", "edit_type": "location", "subtheme": "rural", "scene": "open prairie",
             "scores": [4, 4, 3, 4, 3, 4], "result": "..."},
            {"id": "b", "prompt": "p", "edit_type": "location", "subtheme": "urban", "scene": "neon street",
             "scores": [5, 4, 4, 5, 4, 5], "result": "..."}]


def bench_env(home: Path) -> dict:
    return {**os.environ, "SPARKLE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "SPARKLE_BUNDLED": "0",
            "SPARKLE_EXECUTOR": "in_process",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def sparkle(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkle_assets.cli", "--home", str(home), *args], cwd=REPO,
                          env=bench_env(home), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bench_home(tmp_path_factory):
    """`sparkle bench` run once on two tiny samples of the `location` theme, a model folder with one of
    the two outputs, and a folder of official results."""
    root = tmp_path_factory.mktemp("bench")
    (root / "bench" / "source_videos" / "location").mkdir(parents=True)
    rows = []
    for i, prompt in enumerate(PROMPTS):
        sid = f"Sparkle_location_{i:06d}"
        make_subject_clip(root / "bench" / "source_videos" / "location" / f"{sid}.mp4", seed=10 + i)
        rows.append({"edited_type": "location", "prompt": prompt, "original_video": f"source_videos/location/{sid}.mp4"})
    with open(root / "bench" / "location_bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["edited_type", "prompt", "original_video"])
        writer.writeheader()
        writer.writerows(rows)
    kiwi = root / "kiwi" / "location" / "rural---open_prairie"
    kiwi.mkdir(parents=True)
    make_subject_clip(kiwi / "Sparkle_location_000000_edited.mp4", seed=99)  # sample 1 has no output
    (root / "paper").mkdir()
    (root / "paper" / "location_gemini-2.5-pro_sparkle_score.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in OFFICIAL))
    home = root / "home"
    run = sparkle(home, "bench", "--bench", str(root / "bench"), "--system", f"kiwi={root / 'kiwi'}",
                  "--official", f"paper={root / 'paper'}", "--theme", "location", "--no-bench-split")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return {"root": root, "home": home, "stdout": run.stdout, "db": Lineage(home / "lineage.duckdb")}


def latest_summary(db: Lineage, asset: str) -> dict:
    return json.loads(db.latest_materialization(asset, "location")["summary"])


def test_bench_cli_prints_and_writes_the_table(bench_home):
    out, home = bench_home["stdout"], bench_home["home"]
    for label in ("identity", "static_composite", "pipeline", "kiwi", "paper (official)"):
        assert f"\n  {label} " in out, out
    table = json.loads((home / "bench_results" / "results.json").read_text())
    assert list(table) == ["identity", "static_composite", "pipeline", "kiwi", "paper (official)"]
    assert {row["judge"] for row in list(table.values())[:4]} == {"automatic"}
    identity, kiwi = table["identity"], table["kiwi"]
    assert identity["macro"]["instruction"] == 1 and identity["macro"]["overall"] == 1  # no edit: capped at 1
    assert identity["counts"] == {"n": 2, "failed": 0, "missing": 0, "unjudged": 0}
    assert kiwi["counts"]["n"] == 1 and kiwi["counts"]["missing"] == 1  # counted, not faked
    paper = table["paper (official)"]["macro"]
    assert paper["instruction"] == 4.5 and paper["overall"] == pytest.approx((4.5 + 4 + 3.5 + 4.5 + 3.5 + 4.5) / 6)
    with open(home / "bench_results" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 5
    assert (home / "bench_results" / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (home / "bench_results" / "official" / "pipeline" / "location_automatic_sparkle_score.jsonl").read_text()
    rows = [json.loads(line) for line in lines.splitlines()]
    assert len(rows) == 2 and all(len(r["scores"]) == 6 and r["edit_type"] == "location" for r in rows)
    samples = latest_summary(bench_home["db"], "bench_samples")
    assert samples["samples"] == 2 and samples["by_origin"] == {"sparkle_bench": 2}


def test_every_score_traces_to_its_output_system_and_source(bench_home):
    db = bench_home["db"]
    judged = db.query("SELECT DISTINCT s.artifact_id FROM score s JOIN artifact a ON a.id = s.artifact_id "
                      "WHERE a.kind = 'bench_judgment' AND s.metric = 'bench_overall'")
    assert len(judged) >= 6
    for row in judged:
        kinds = {r["kind"] for r in db.sources_of(row["artifact_id"])}
        assert {"bench_output", "bench_system", "bench_sample", "source_clip", "source_file",
                "foreground_mask"} <= kinds, kinds
    # the pipeline's own stages ran on the external samples, with the sample's prompt as instruction
    instruction = db.query("SELECT info FROM artifact WHERE kind = 'instruction' AND asset_key = 'bench_outputs'")
    assert {json.loads(r["info"])["instruction"] for r in instruction} == set(PROMPTS)


def test_adding_a_system_judges_only_that_system(bench_home):
    root, home, db = bench_home["root"], bench_home["home"], bench_home["db"]
    shutil.copytree(root / "kiwi", root / "kiwi2")
    make_subject_clip(root / "kiwi2" / "Sparkle_location_000001_edited.mp4", seed=98)  # flat layout
    run = sparkle(home, "bench", "--bench", str(root / "bench"), "--system", f"kiwi={root / 'kiwi'}",
                  "--system", f"kiwi2={root / 'kiwi2'}", "--official", f"paper={root / 'paper'}",
                  "--theme", "location", "--no-bench-split")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    outputs = latest_summary(db, "bench_outputs")["per_system"]
    assert outputs["kiwi2"] == {"outputs": 2, "computed": 2, "reused": 0, "missing": 0, "failed": 0}
    for name in ("identity", "static_composite", "pipeline", "kiwi"):
        assert outputs[name]["computed"] == 0 and outputs[name]["reused"] == outputs[name]["outputs"] > 0
    judged = latest_summary(db, "bench_judgments")
    # kiwi2's output of sample 0 is byte for byte kiwi's: only its new video is judged
    assert judged["judged"] == 1 and judged["reused"] == judged["outputs"] - 1
    assert judged["per_system"]["kiwi2"] == {"judged": 1, "reused": 1, "failed": 0, "requests": 0}
    assert "\n  kiwi2 " in run.stdout


def test_an_asset_registers_itself_as_a_system(bench_home, tmp_path):
    """What a trained checkpoint's outputs do: an asset records a `bench_output` per sample with its
    system's name, and `bench_outputs` links them in as that system, with lineage to the producer."""
    from sparkle_assets.core.lineage import ArtifactRow, LineageBatch, now_iso
    from sparkle_assets.core.store import ArtifactStore
    from sparkle_assets.evaluation.bench_outputs import plan, sample_inputs
    from sparkle_assets.evaluation.systems import systems_for

    home = tmp_path / "home"
    shutil.copytree(bench_home["home"], home, ignore=shutil.ignore_patterns("dagster"))
    db, store = Lineage(home / "lineage.duckdb"), ArtifactStore(home / "store")
    with store.writing("bench_output", "ckpt0000000000000000000a", "mp4") as tmp:
        make_subject_clip(tmp, seed=5)
    art = store.commit("bench_output", "ckpt0000000000000000000a", code_version="editor_outputs-0", params={},
                       inputs={}, info={"system": "ckpt_a"}, ext="mp4")
    batch = LineageBatch(artifacts=[ArtifactRow(id=art.id, kind="bench_output", asset_key="editor_outputs",
                                                partition="location", clip_id="Sparkle_location_000001",
                                                theme="location", uri=art.uri, bytes=art.bytes,
                                                content_hash=art.content_hash, info={"system": "ckpt_a"})])
    batch.materialization = {"run_id": "r", "asset_key": "editor_outputs", "partition": "location",
                             "code_version": "0", "data_version": "x", "created_at": now_iso(),
                             "artifact_ids": [art.id], "summary": {}}
    db.write(batch)
    settings = {"systems": {}}
    systems = {s.name: s for s in systems_for(settings, db, "location")}
    assert systems["ckpt_a"].kind == "asset" and systems["ckpt_a"].params == {"asset": "editor_outputs"}
    fn, clips, missing = plan(systems["ckpt_a"], sample_inputs(db, "location"), "location", db)
    assert fn.__name__ == "link_output" and [c.clip_id for c in clips] == ["Sparkle_location_000001"]
    assert clips[0].parents["video"]["id"] == art.id  # the output's lineage leads to what produced it
    assert missing == {"Sparkle_location_000000": "editor_outputs has no output for this sample"}


class RecordedJudge:
    """A local OpenAI-compatible endpoint replying from a script: per edited video (the second video
    part, by its sha256) a list of replies, the last one repeated. Records every request. With
    `images_only`, a request with a video part is refused (HTTP 400) and any other gets `script["*"]`."""

    def __init__(self, script: dict[str, list[str]], images_only: bool = False):
        self.requests = []
        served: dict[str, int] = {}
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                parts = body["messages"][0]["content"]
                video = parts[-1]["image_url"]["url"] if parts[-1]["type"] == "image_url" else ""
                if images_only:
                    outer.requests.append({"parts": [p["type"] for p in parts], "video": video[:22]})
                    if video.startswith("data:video/"):
                        self.send_response(400)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    video = "x,"
                key = "*" if images_only else hashlib.sha256(base64.b64decode(video.split(",", 1)[1])).hexdigest()
                with lock:
                    if not images_only:
                        outer.requests.append({"parts": [p["type"] for p in parts], "video": video[:22],
                                               "temperature": body.get("temperature"), "seed": body.get("seed")})
                    replies = script.get(key, ["no script for this video"])
                    reply = replies[min(served.get(key, 0), len(replies) - 1)]
                    served[key] = served.get(key, 0) + 1
                data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": reply}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def reply(*scores: int) -> str:
    names = ["Instruction Compliance", "Overall Visual Quality", "Foreground Integrity",
             "Foreground Motion Consistency", "Background Dynamics", "Background Visual Quality"]
    return "Brief reasoning: judged.\n" + "".join(f"{n}: {s}\n" for n, s in zip(names, scores))


def test_vlm_judge_end_to_end_with_recorded_replies(bench_home, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(bench_home["home"], home, ignore=shutil.ignore_patterns("dagster"))
    db = Lineage(home / "lineage.duckdb")
    outputs = db.current_artifacts("bench_outputs", "location", kind="bench_output")
    store = home / "store"
    script, tries = {}, {}
    for o in outputs:  # by system; a model folder's replies never parse
        system = o["params"]["system"]
        key = hashlib.sha256((store / o["uri"]).read_bytes()).hexdigest()
        script[key] = {"identity": [reply(1, 1, 1, 1, 1, 1)],
                       "static_composite": [reply(3, 5, 4, 5, 1, 5)],  # capped at 3
                       "pipeline": ["**Instruction Compliance:** 4\nlooks fine", reply(4, 4, 5, 4, 4, 4)]
                       }.get(system, ["I cannot rate these videos."])
        tries[key] = {"identity": 1, "static_composite": 1, "pipeline": 2}.get(system, 3)  # a video is judged once
    server = RecordedJudge(script)
    try:
        for name, value in {"SPARKLE_HOME": str(home), "SPARKLE_VLM_BACKEND": "endpoint", "SPARKLE_VLM_URL": server.url,
                            "SPARKLE_VLM_MODEL": "fake-judge", "SPARKLE_BENCH_JUDGE": "vlm",
                            "SPARKLE_EXECUTOR": "in_process"}.items():
            monkeypatch.setenv(name, value)
        from sparkle_assets.core.resources import default_resources
        from sparkle_assets.evaluation.bench_judgments import bench_judgments
        from sparkle_assets.evaluation.bench_results import bench_results
        from sparkle_assets.evaluation.resources import bench_resources

        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("theme", ["location"])
        resources = {**default_resources(), **bench_resources()}

        def judge_and_report():
            assert dg.materialize([bench_judgments], resources=resources, partition_key="location",
                                  instance=instance).success
            assert dg.materialize([bench_results], resources=resources, instance=instance).success
            return latest_summary(db, "bench_judgments"), json.loads((home / "bench_results" / "results.json").read_text())

        first, table = judge_and_report()
        # identity, static: one request each; pipeline: malformed then valid; a model folder: never parses (3 tries)
        assert len(server.requests) == sum(tries.values()) and first["requests"] == len(server.requests)
        assert first["judged"] == len(tries) and first["outputs"] == len(outputs)
        request = server.requests[0]
        assert request["parts"] == ["text", "image_url", "image_url"] and request["video"] == "data:video/mp4;base64,"
        assert (request["temperature"], request["seed"]) == (0, 42)
        assert table["static_composite"]["judge"] == "fake-judge"
        assert table["static_composite"]["macro"]["visual"] == 3  # 5 capped at Instruction Compliance
        assert table["pipeline"]["macro"]["fg_integrity"] == 4
        kiwi = table["kiwi"]
        assert kiwi["counts"] == {"n": 0, "failed": 1, "missing": 1, "unjudged": 0} and kiwi["macro"] is None
        failed = db.query("SELECT reason, info FROM artifact WHERE kind = 'bench_judgment' AND status = 'failed'")
        assert len(failed) == sum(t == 3 for t in tries.values()) and "did not parse after 3 tries" in failed[0]["reason"]
        assert json.loads(failed[0]["info"])["reply"] == "I cannot rate these videos."
        # nothing changed: every judgment, the failure included, is reused; not one request is sent
        before = len(server.requests)
        second, _ = judge_and_report()
        assert len(server.requests) == before and second["requests"] == 0 and second["judged"] == 0
    finally:
        server.close()


def test_vlm_judge_falls_back_to_frames_for_an_images_only_endpoint(bench_home):
    from sparkle_bench.vlm_judge import VlmJudge
    from sparkle_model.vlm import EndpointVlm

    home, db = bench_home["home"], bench_home["db"]
    output = db.current_artifacts("bench_outputs", "location", kind="bench_output")[0]
    clip = db.current_artifacts("bench_samples", "location", kind="bench_sample")[0]["info"]["clip_artifact"]
    src = home / "store" / db.artifacts_by_id([clip])[clip]["uri"]
    server = RecordedJudge({"*": [reply(4, 4, 4, 4, 4, 4)]}, images_only=True)
    try:
        judge = VlmJudge(EndpointVlm(server.url, "images-only", retries=1), "images-only", media="video", frames=3)
        result = judge.judge("Put the subject on a beach", src, home / "store" / output["uri"])
    finally:
        server.close()
    assert result == {"status": "ok", "scores": [4] * 6, "reply": reply(4, 4, 4, 4, 4, 4).strip(), "attempts": 1,
                      "media": "frames"}
    refused, accepted = server.requests
    assert refused["video"] == "data:video/mp4;base64," and accepted["parts"] == ["image_url"] * 6 + ["text"]


# -- the UI, in a real browser -------------------------------------------------------------------------------------
def test_ui_shows_the_bench_table_and_plot(bench_home, tmp_path):
    browser_path = chromium()
    from playwright.sync_api import expect, sync_playwright

    with dagster_webserver(bench_env(bench_home["home"])) as base:
        shot = Path(os.environ.get("SPARKLE_SCREENSHOT_DIR", tmp_path))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{base}/locations/sparkle/asset-groups/bench")  # the graph of the bench group
            skip = page.get_by_role("button", name="Skip")  # the community pop-up on a first visit
            for name in ("bench_samples", "bench_outputs", "bench_judgments", "bench_results"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=30_000)
            if skip.count():
                skip.first.click()
            page.screenshot(path=str(shot / "bench_graph.png"))
            page.goto(f"{base}/assets/bench_results")
            md = page.locator(".dagster-markdown")
            expect(md.first).to_be_visible(timeout=30_000)
            if skip.count():
                skip.first.click()
            table = page.locator(".dagster-markdown table").first
            expect(table.locator("td", has_text="static_composite")).to_be_visible()
            expect(table.locator("th", has_text="BgVi.")).to_be_visible()
            expect(table.locator("td", has_text="paper (official)")).to_be_visible()
            plot = page.locator('.dagster-markdown img[src^="data:image/png;base64,"]').first
            expect(plot).to_be_visible()
            assert plot.evaluate("e => e.complete && e.naturalWidth") > 300  # decoded, not a broken image
            page.screenshot(path=str(shot / "bench_results.png"), full_page=True)
            browser.close()
        assert (shot / "bench_results.png").stat().st_size > 10_000
