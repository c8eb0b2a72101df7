"""Sparkle-Bench without Dagster: the rubric parser and cap, the paper's aggregation against the
official script's arithmetic, prompt reading, output lookup, and the automatic judge on defect pairs
made from a real demo clip (each defect clearly below its clean counterpart on the dimension it
breaks, and refused by the pipeline's final filter)."""

from __future__ import annotations

import json
from collections import defaultdict

import cv2
import numpy as np
import pytest

from conftest import REPO
from sparkle_bench.official import macro_means, read_results_dir, theme_means
from sparkle_bench.prompts import motion_intensity, nearest_scene, prompt_cues
from sparkle_bench.rubric import DIMENSIONS, cap, judge_prompt, parse_reply
from sparkle_bench.sparkle_format import ReleaseFormatError, find_edited_output
from sparkle_model.taxonomy import load_taxonomy

REPLY = """Brief reasoning: background replaced, subject kept.
Instruction Compliance: 3
Overall Visual Quality: 5
Foreground Integrity: 4
Foreground Motion Consistency: 2
Background Dynamics: 4
Background Visual Quality: 5
"""


def test_reply_parsing_follows_the_official_check_format():
    assert parse_reply(REPLY) == [3, 3, 3, 2, 3, 3]  # dims 2-6 capped at Instruction Compliance
    assert cap([3, 5, 4, 2, 4, 5]) == [3, 3, 3, 2, 3, 3]
    assert parse_reply(REPLY.replace(": 3", ": 4.0")) == [4, 4, 4, 2, 4, 4]
    assert parse_reply(REPLY.replace(": 3", ": 4.")) == [4, 4, 4, 2, 4, 4]
    assert parse_reply(REPLY.replace(": 3", ": 4/5")) is None
    assert parse_reply(REPLY.replace("Instruction Compliance: 3", "**Instruction Compliance:** 3")) is None
    assert parse_reply(REPLY.replace(": 5\nForeground", ": 6\nForeground")) is None
    assert parse_reply(REPLY.replace("Background Visual Quality: 5\n", "")) is None
    assert parse_reply(REPLY + "Instruction Compliance: 5\n") == [5, 5, 4, 2, 4, 5]  # the last line wins
    text = judge_prompt("Put the subject on a beach")
    assert text.startswith("\nYou are a data rater") and "Editing instruction is: Put the subject on a beach." in text
    assert text.endswith("Below are the videos before and after editing:\n")


# -- the official script's aggregation, verbatim in meaning (eval_sparkle_bench_gemini.py) ------------------
def official_avg_score_by_edit_type(jsonl_path):
    n_dims = 6
    dim_sums, record_count = defaultdict(lambda: [0.0] * n_dims), defaultdict(int)
    for line in open(jsonl_path, encoding="utf-8"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        edit_type, scores = record.get("edit_type"), record.get("scores", [])
        if edit_type and isinstance(scores, list) and len(scores) == n_dims:
            for i in range(n_dims):
                dim_sums[edit_type][i] += scores[i]
            record_count[edit_type] += 1
    avg = {}
    for et, sums in dim_sums.items():
        n = record_count[et]
        means = [s / n for s in sums]
        avg[et] = {**dict(zip(DIMENSIONS, means)), "overall": sum(means) / n_dims, "count": n}
    return avg


def test_synthetic_official_jsonl_aggregates_like_the_official_script(tmp_path):
    rng = np.random.default_rng(0)
    expected = {}
    for theme, n in (("location", 7), ("season", 3), ("time", 5)):
        lines = []
        for k in range(n):
            scores = cap([int(v) for v in rng.integers(1, 6, 6)])
            lines.append(json.dumps({"id": f"{theme}_{k}", "prompt": "p", "edit_type": theme, "subtheme": "s",
                                     "scene": "x", "scores": scores, "result": "..."}))
        lines += ["{not json", json.dumps({"edit_type": theme, "scores": [5, 5, 5]}),
                  json.dumps({"edit_type": "other", "scores": [1] * 6})]
        path = tmp_path / f"{theme}_gemini-2.5-pro_sparkle_score.jsonl"
        path.write_text("\n".join(lines) + "\n")
        expected[theme] = official_avg_score_by_edit_type(path)[theme]
    ours = read_results_dir(tmp_path)["gemini-2.5-pro"]
    for theme, v in expected.items():
        got = ours[theme]["means"]
        assert got["n"] == v["count"] and ours[theme]["skipped"] == 3
        for key in (*DIMENSIONS, "overall"):
            assert got[key] == pytest.approx(v[key], abs=1e-12)
    macro = macro_means({t: ours[t]["means"] for t in ours})
    official_macro = [sum(v[d] for v in expected.values()) / len(expected) for d in DIMENSIONS]
    assert [macro[d] for d in DIMENSIONS] == pytest.approx(official_macro, abs=1e-12)
    assert macro["overall"] == pytest.approx(sum(official_macro) / 6, abs=1e-12)
    assert macro["n"] == 15
    # the worked example: [3,3,3,2,3,3] and [5,5,5,5,5,4] (and an ignored 3-score row)
    worked = theme_means([[3, 3, 3, 2, 3, 3], [5, 5, 5, 5, 5, 4], [5, 5, 5]])
    assert (worked["instruction"], worked["fg_motion"], worked["bg_visual"], worked["n"]) == (4.0, 3.5, 3.5, 2)
    assert worked["overall"] == pytest.approx(3.8333, abs=1e-4)


def test_prompts_are_matched_to_the_nearest_scene_and_read_for_motion():
    themes, _ = load_taxonomy(REPO / "themes")
    prairie = ("Place the subject in an open prairie under a vast sky, with tall golden grass swaying vigorously in "
               "a strong wind, creating waves of motion across the landscape.")
    match = nearest_scene(prairie, themes)
    assert (match.theme, match.scene.keyword) == ("location", "rural: open prairie")
    assert "prairie" in match.shared and 0 < match.similarity <= 1
    assert nearest_scene("a medieval village with torchlight and embers", themes).scene.keyword.startswith("era:")
    assert motion_intensity(prairie) == "energetic"
    assert motion_intensity("petals gently drifting in a subtle breeze") == "gentle"
    assert motion_intensity("the town square as a still photo, no motion at all") == "static"
    assert motion_intensity("a harbour with boats") == "moderate"
    assert prompt_cues(prairie)[:2] == ["water", "foliage"] and "clouds" in prompt_cues(prairie)
    assert prompt_cues("a blank wall") == []


def test_outputs_are_found_in_kiwi_layout_or_flat_and_never_outside(tmp_path):
    kiwi = tmp_path / "kiwi" / "location" / "rural---open_prairie"
    kiwi.mkdir(parents=True)
    (kiwi / "Sparkle_location_000598_edited.mp4").write_bytes(b"x")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "Sparkle_location_000598_edited.mp4").write_bytes(b"y")
    assert find_edited_output(tmp_path / "kiwi", "location", "Sparkle_location_000598", "rural: open prairie") == \
        (kiwi / "Sparkle_location_000598_edited.mp4").resolve()
    # another scene keyword than the run's: still found under the theme
    assert find_edited_output(tmp_path / "kiwi", "location", "Sparkle_location_000598", "coastal: cliffs") is not None
    assert find_edited_output(tmp_path / "flat", "location", "Sparkle_location_000598", None).read_bytes() == b"y"
    assert find_edited_output(tmp_path / "flat", "location", "Sparkle_location_000001", None) is None
    (tmp_path / "outside_edited.mp4").write_bytes(b"z")
    for bad in ("../outside", "a/b", ".hidden", "x*"):
        with pytest.raises(ReleaseFormatError):
            find_edited_output(tmp_path / "flat", "location", bad, None)


# -- the automatic judge on defect pairs made from a real demo clip -------------------------------------------
@pytest.fixture(scope="module")
def defect_results():
    from conftest import SHARED

    clip = SHARED / "sparkle_demo" / "Sparkle_location_000223_source.mp4"
    if not clip.is_file():
        pytest.skip("../shared/data/sparkle_demo is absent")
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from defect_pairs import judge_clip

    return judge_clip(clip, frames=33, width=480)  # what benchmarks/defect_pairs.py reports on every demo clip


@pytest.mark.parametrize("defect", ["ghost", "pasted_patch", "frozen_foreground", "frozen_background",
                                    "colour_mismatch"])
def test_each_defect_scores_clearly_below_its_clean_counterpart(defect_results, defect):
    from sparkle_bench.defects import BROKEN

    k = DIMENSIONS.index(BROKEN[defect])
    clean, bad = defect_results["clean"], defect_results[defect]
    assert bad["bench"][k] <= clean["bench"][k] - 2, (defect, clean["bench"], bad["bench"])
    assert bad["filter"][k] <= clean["filter"][k] - 2, (defect, clean["filter"], bad["filter"])
    # the pipeline's final filter (edit score >= 8, every judged dimension >= 3) keeps the clean pair only
    assert clean["kept"] and not bad["kept"], (clean, bad)


def test_identity_fails_instruction_compliance_and_everything_is_capped(tmp_path):
    from sparkle_bench.automatic_judge import judge_videos
    from sparkle_bench.metrics import IqaModels
    from tiny_models import build_tiny_clip

    rng = np.random.default_rng(1)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (72, 128, 3), dtype=np.uint8), (5, 5), 0) for _ in range(9)]
    masks = np.zeros((9, 72, 128), bool)
    masks[:, 20:50, 40:70] = True
    result = judge_videos(frames, frames, masks, 16, "Put the subject on a sunny beach with waves")
    assert result["levels"]["instruction"] == 1 and result["scores"] == [1] * 6
    assert result["levels"]["fg_integrity"] == 5 and result["levels"]["fg_motion"] == 5  # before the cap
    assert any("CLIP" in u for u in result["unmeasured"]) and result["signals"]["clip_gain"] is None
    # with a CLIP model the prompt match is measured (the output must sit closer to the prompt than the source)
    clip = IqaModels(clip_dir=str(build_tiny_clip(tmp_path / "clip")))
    result = judge_videos(frames, frames, masks, 16, "Put the subject on a sunny beach with waves", models=clip)
    assert result["signals"]["clip_gain"] == 0 and not any("CLIP" in u for u in result["unmeasured"])
    assert result["scores"] == [1] * 6
