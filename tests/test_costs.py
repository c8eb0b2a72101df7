"""What a pair costs: the full-cost rule on a hand-built lineage (both lineage backends), the cost
table's migration, the planner's arithmetic and profile checks, and a straggler stopped at its
stage's time limit while the fast clips finish."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from sparkle_assets.core.clipstep import ClipInput, run_clip_step
from sparkle_assets.core.config import ConfigError
from sparkle_assets.core.costs import full_costs, record_step_costs
from sparkle_assets.core.executor import Cost, ProcessPoolExecutor
from sparkle_assets.core.lineage import ArtifactRow, Lineage, LineageBatch, open_lineage
from sparkle_assets.core.planner import Measured, ProfileError, cost_range, load_profile, plan, wilson
from sparkle_assets.core.resources import ClipExecutorResource
from sparkle_assets.core.store import ArtifactStore

from browser import CHROMIUM_FLAGS, chromium, dagster_webserver
from conftest import REPO, make_clip
from slow_backend import slow_or_fast

# S: a source clip (own 6 s) with three children: its mask M, a static-clip decision D, and pair P1,
# which reads S directly as well as through M; M (own 4 s) serves two pairs, P1 and P2 (own 1 s each);
# X has no recorded cost (made before costs were recorded).
HAND_BUILT = {"S": ("source_clips", 6.0), "M": ("foreground_masks", 4.0), "D": ("static_clips", 0.5),
              "P1": ("curated_pairs", 1.0), "P2": ("curated_pairs", 1.0), "X": ("source_clips", None)}
EDGES = [("M", "S", "clip"), ("D", "S", "clip"), ("P1", "S", "clip"), ("P1", "M", "mask"), ("P2", "M", "mask"),
         ("P2", "X", "clip")]


def hand_built(db) -> None:
    batch = LineageBatch(edges=EDGES)
    for aid, (asset, wall) in HAND_BUILT.items():
        batch.artifacts.append(ArtifactRow(id=aid, kind=asset, asset_key=asset, clip_id="c", run_id="r",
                                           cost=None if wall is None else Cost(wall_s=wall, cpu_s=wall / 2,
                                                                               peak_rss_mb=100.0)))
    db.write(batch)


def check_hand_built(db) -> None:
    costs = full_costs(db, ["P1", "P2", "D", "M"])
    # S gives 6/3 = 2 to each child; M's full cost 4 + 2 = 6 gives 3 to each pair
    assert costs["M"].total["wall_s"] == pytest.approx(6.0)
    assert costs["D"].total["wall_s"] == pytest.approx(2.5)
    assert costs["P1"].total["wall_s"] == pytest.approx(1 + 3 + 2)
    assert costs["P1"].total["cpu_s"] == pytest.approx(3.0)
    assert costs["P1"].by_stage == {"curated_pairs": pytest.approx({"wall_s": 1.0, "cpu_s": 0.5, "gpu_s": 0.0}),
                                    "foreground_masks": pytest.approx({"wall_s": 2.0, "cpu_s": 1.0, "gpu_s": 0.0}),
                                    "source_clips": pytest.approx({"wall_s": 3.0, "cpu_s": 1.5, "gpu_s": 0.0})}
    assert costs["P2"].total["wall_s"] == pytest.approx(1 + 3)
    assert costs["P2"].unrecorded == 1 and costs["P1"].unrecorded == 0
    # nothing is lost or counted twice: the leaves carry every recorded second
    assert sum(costs[k].total["wall_s"] for k in ("P1", "P2", "D")) == pytest.approx(6 + 4 + 0.5 + 1 + 1)
    with pytest.raises(KeyError):
        full_costs(db, ["nope"])


def test_full_cost_rule_on_a_hand_built_lineage(tmp_path):
    db = Lineage(tmp_path / "lineage.duckdb")
    hand_built(db)
    check_hand_built(db)
    row = db.query("SELECT * FROM artifact_cost WHERE artifact_id = 'M'")[0]
    assert (row["wall_s"], row["cpu_s"], row["peak_rss_mb"], row["device"], row["measured"]) == (4.0, 2.0, 100.0, "cpu",
                                                                                                 "clip")


def test_full_cost_rule_on_ducklake(pg_server, monkeypatch, tmp_path):
    database = pg_server.create_database(f"cost_{time.monotonic_ns()}")
    for key, value in {"SPARKLE_LINEAGE": "ducklake", "SPARKLE_LINEAGE_DATA": str(tmp_path / "lake"),
                       **pg_server.env(database)}.items():
        monkeypatch.setenv(key, value)
    db = open_lineage(tmp_path)
    hand_built(db)
    check_hand_built(db)
    # a later cost row for the same artifact wins, as in the local backend
    db.write(LineageBatch(artifacts=[ArtifactRow(id="D", kind="static_clips", asset_key="static_clips", run_id="r2",
                                                 cost=Cost(wall_s=9.0, cpu_s=1.0, peak_rss_mb=None))]))
    assert db.query("SELECT wall_s, run_id FROM artifact_cost WHERE artifact_id = 'D'") == [{"wall_s": 9.0, "run_id": "r2"}]


def test_older_database_gets_the_cost_table(tmp_path):
    db = Lineage(tmp_path / "lineage.duckdb")
    db.write(LineageBatch(artifacts=[ArtifactRow(id="old", kind="k", asset_key="a")]))
    import duckdb

    con = duckdb.connect(str(db.db_path))  # make it a schema-2 database, as written before this change
    con.execute("DROP TABLE artifact_cost")
    con.execute("UPDATE lineage_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    db.write(LineageBatch(artifacts=[ArtifactRow(id="new", kind="k", asset_key="a",
                                                 cost=Cost(wall_s=1.5, cpu_s=1.0, peak_rss_mb=None))]))
    assert [r["id"] for r in db.query("SELECT id FROM artifact ORDER BY id")] == ["new", "old"]
    assert db.query("SELECT artifact_id, wall_s FROM artifact_cost") == [{"artifact_id": "new", "wall_s": 1.5}]
    assert db.query("SELECT value FROM lineage_meta WHERE key = 'schema_version'")[0]["value"] == "3"
    assert full_costs(db, ["old"])["old"].unrecorded == 1


def test_step_accounting_charges_unmeasured_rows_and_counts_reuse(tmp_path):
    db = Lineage(tmp_path / "lineage.duckdb")
    db.write(LineageBatch(artifacts=[ArtifactRow(id="reused", kind="k", asset_key="a",
                                                 cost=Cost(wall_s=7.0, cpu_s=6.0, peak_rss_mb=None))]))
    batch = LineageBatch(artifacts=[
        ArtifactRow(id="reused", kind="k", asset_key="a", fresh=False),
        ArtifactRow(id="computed", kind="k", asset_key="a", cost=Cost(wall_s=2.0, cpu_s=1.0, peak_rss_mb=None)),
        ArtifactRow(id="timed", kind="k", asset_key="a", status="failed", reason="timed out after 5 s",
                    cost=Cost(wall_s=5.0, cpu_s=None, peak_rss_mb=None)),
        ArtifactRow(id="decision1", kind="d", asset_key="a"), ArtifactRow(id="decision2", kind="d", asset_key="a")])
    summary = record_step_costs(db, batch)
    assert summary["compute_wall_s"] >= 7.0 and summary["reuse_saved_wall_s"] == 7.0
    assert summary["reuse_saved_cpu_s"] == 6.0 and summary["timed_out"] == 1
    decisions = [a for a in batch.artifacts if a.kind == "d"]
    assert all(a.measured == "step" and a.share == 0.5 and a.cost is not None for a in decisions)
    assert batch.artifacts[0].cost is None  # a reused artifact costs nothing in this run


def test_wilson_interval_and_cost_range():
    assert wilson(1, 3) == pytest.approx((0.0615, 0.7923), abs=1e-4)
    assert wilson(3, 3) == pytest.approx((0.4385, 1.0), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(500, 1000)
    assert hi - lo < 0.07  # many samples, narrow range
    assert cost_range((2.0, 4.0)) == pytest.approx((3.0, 3.0 - 1.959964, 3.0 + 1.959964))
    assert cost_range((8.0,)) == (8.0, 4.0, 16.0)
    assert cost_range(()) == (0.0, 0.0, 0.0)


def test_plan_arithmetic_on_fixed_inputs():
    measured = [Measured("foreground_masks", False, 4, 2, (2.0, 4.0)), Measured("edited_videos", True, 2, 1, (10.0,))]
    a, b = plan(measured, clips=100, themes=2)
    lo_a, hi_a = wilson(2, 4)
    lo_b, hi_b = wilson(1, 2)
    assert a.items == (100, 100, 100)
    assert a.kept == pytest.approx((50, 100 * lo_a, 100 * hi_a))
    assert a.wall_s == pytest.approx((300, 100 * (3 - 1.959964), 100 * (3 + 1.959964)))
    assert b.items == pytest.approx((100, 200 * lo_a, 200 * hi_a))  # the kept clips, once per theme
    assert b.kept == pytest.approx((50, 200 * lo_a * lo_b, 200 * hi_a * hi_b))
    assert b.wall_s == pytest.approx((1000, 200 * lo_a * 5, 200 * hi_a * 20))
    assert b.source == "measured (2 items)" and b.gpu_s is None
    estimate = plan(measured, clips=100, themes=2, profile={"edited_videos": {"wall_s": 7.0, "gpu_s": 7.0,
                                                                           "note": "H100"}})[1]
    assert estimate.wall_s == pytest.approx((700, 200 * lo_a * 7, 200 * hi_a * 7))
    assert estimate.gpu_s == pytest.approx(700) and estimate.source == "estimate (profile: H100)"


@pytest.mark.parametrize("text, message", [
    ("stages: {edited_videos: {wall_s: 120, gpu_s: 120, device: cuda, note: 'Wan 2.1 on H100'}}", None),
    ("stages: {nowhere: {wall_s: 1}}", "unknown stage"),
    ("stages: {edited_videos: {wall_s: -1}}", "in [0, 1e7]"),
    ("stages: {edited_videos: {wall_s: .nan}}", "in [0, 1e7]"),
    ("stages: {edited_videos: {wall_s: true}}", "in [0, 1e7]"),
    ("stages: {edited_videos: {gpu_s: 3}}", "must be a mapping with wall_s"),
    ("stages: {edited_videos: {wall_s: 1, command: rm}}", "must be a mapping with wall_s"),
    ("stages: {edited_videos: {wall_s: 1, note: [a]}}", "printable text"),
    ("stages: [1, 2]", "one key"),
    ("other: 1", "one key"),
    ("!!python/object/apply:os.system ['true']", "cannot read it as YAML"),
    ("stages: {edited_videos: {wall_s: 1", "cannot read it as YAML"),
])
def test_profile_is_checked_as_untrusted_input(tmp_path, text, message):
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    if message is None:
        assert load_profile(path) == {"edited_videos": {"wall_s": 120.0, "gpu_s": 120.0, "device": "cuda",
                                                        "note": "Wan 2.1 on H100"}}
        return
    with pytest.raises(ProfileError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_profile(path)


def test_profile_size_is_capped(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 70000)
    with pytest.raises(ProfileError, match="more than"):
        load_profile(path)


def test_time_limit_settings_are_validated():
    resource = ClipExecutorResource(kind="in_process", clip_time_limit_s=900, stage_time_limits="edited_videos=3600, pair_scores=60")
    executor = resource.executor()
    assert executor.time_limit("edited_videos") == 3600 and executor.time_limit("static_clips") == 900
    for bad, message in [({"clip_time_limit_s": 0}, "between 1 and 86400"),
                         ({"stage_time_limits": "edited_videos=1e9"}, "between 1 and 86400"),
                         ({"stage_time_limits": "edited_videos"}, "is not STAGE=SECONDS"),
                         ({"stage_time_limits": "../x=5"}, "is not a stage name")]:
        with pytest.raises(ConfigError, match=message):
            ClipExecutorResource(kind="in_process", **bad).executor()


def test_a_straggler_is_stopped_at_the_limit_and_the_step_goes_on(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    parents = {}
    for i in range(3):  # tiny clips (96x64, 17 frames) inside the store
        make_clip(store.root / "clips" / f"c{i}.mp4", frames=17, seed=i)
        parents[f"c{i}"] = {"id": f"src{i}", "uri": f"clips/c{i}.mp4"}
    items = [ClipInput(cid, {"clip": row}, {"slow": cid == "c1"}) for cid, row in parents.items()]
    executor = ProcessPoolExecutor(workers=2)
    run_clip_step(store=store, clips=[items[0], items[2]], fn=slow_or_fast, kind="warm_up", ext="bin", code_version="1",
                  params={}, asset_key="warm_up", run_id="run", executor=executor)  # both workers up before the clock
    limit = 3.0
    started = time.monotonic()
    report = run_clip_step(store=store, clips=items, fn=slow_or_fast, kind="slow_test", ext="bin", code_version="1",
                           params={}, asset_key="slow_test", run_id="run", executor=executor, timeout=limit)
    took = time.monotonic() - started
    assert took < limit + 5, f"the step took {took:.1f}s: it waited for the straggler"
    assert report.failures == {"c1": f"timed out after {limit:g} s"}
    assert report.counts["timed_out"] == 1 and report.computed == 2
    rows = {a.clip_id: a for a in report.batch.artifacts}
    assert rows["c1"].status == "failed" and rows["c1"].cost.wall_s == pytest.approx(limit, abs=1.5)
    assert rows["c1"].cost.cpu_s is None
    assert all(rows[c].cost is not None and rows[c].cost.wall_s < limit for c in ("c0", "c2"))
    print(f"straggler: step took {took:.2f}s with a {limit:g}s limit; slow clip charged {rows['c1'].cost.wall_s:.2f}s")


@pytest.fixture(scope="module")
def costed_home(tmp_path_factory):
    """A home (two tiny clips, the shipped themes) where the theme-independent assets and theme `time`
    were built, then `time` again (everything reused), in the home's own Dagster instance, as
    `sparkle run` leaves it; with what the lineage held after the first theme run."""
    from sparkle_assets.core.resources import default_resources
    from sparkle_assets.core.runs import open_instance
    from sparkle_assets.definitions import THEME_INDEPENDENT
    from test_theme_assets import SMALL, build_theme, make_subject_clip, run_sensor

    tmp = tmp_path_factory.mktemp("costs")
    home, folder, themes = tmp / "home", tmp / "videos", tmp / "themes"
    folder.mkdir()
    make_subject_clip(folder / "a.mp4", seed=1)
    make_subject_clip(folder / "b.mp4", seed=2)
    shutil.copytree(REPO / "themes", themes)
    env = {"SPARKLE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "SPARKLE_BUNDLED": "0",
           "SPARKLE_EXECUTOR": "in_process", "SPARKLE_THEMES_DIR": str(themes), "SPARKLE_SOURCE_FOLDERS": str(folder)}
    with pytest.MonkeyPatch.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        (home / "dagster").mkdir(parents=True)
        instance = open_instance(home, say=lambda _: None)
        resources = default_resources()
        assert dg.materialize(THEME_INDEPENDENT, resources=resources, run_config=SMALL, instance=instance).success
        run_sensor(instance)
        db = Lineage(home / "lineage.duckdb")
        first = build_theme(instance, resources, "time")
        uncosted = db.query("SELECT a.kind, count(*) AS n FROM artifact a LEFT JOIN artifact_cost c "
                            "ON c.artifact_id = a.id WHERE c.artifact_id IS NULL GROUP BY a.kind")
        recorded = db.query("SELECT artifact_id, wall_s FROM artifact_cost ORDER BY 1")
        again = build_theme(instance, resources, "time")
        yield {"home": home, "env": env, "instance": instance, "db": db, "first": first, "again": again,
               "uncosted": uncosted, "recorded": recorded}
        instance.dispose()


def test_a_run_records_every_cost_and_the_funnel_agrees_with_the_run_table(costed_home, capsys):
    """Through Dagster: every artifact a run makes has a cost; a re-run computes nothing, records what
    reuse saved, and keeps the recorded costs; the funnel (dataset metadata, `sparkle report`) counts
    what `sparkle run`'s table counts; the manifest, `sparkle lineage cost` and `sparkle plan` work."""
    import json

    from sparkle_assets.cli import main, print_tables
    from sparkle_assets.core.funnel import FUNNEL_STAGES, THEME_STAGES, funnel
    from test_theme_assets import summary

    home, db, instance, again = costed_home["home"], costed_home["db"], costed_home["instance"], costed_home["again"]
    assert costed_home["uncosted"] == []  # theme-independent run and theme run: every artifact has a cost
    spent = summary(db, costed_home["first"].run_id)
    assert spent[("edited_videos", "time")]["compute_wall_s"] > 0
    recorded = costed_home["recorded"]
    s = summary(db, again.run_id)
    assert s[("edited_videos", "time")]["compute_wall_s"] == 0  # reused: nothing spent ...
    assert s[("edited_videos", "time")]["reuse_saved_wall_s"] == spent[("edited_videos", "time")]["compute_wall_s"]
    now = {r["artifact_id"]: r["wall_s"] for r in db.query("SELECT artifact_id, wall_s FROM artifact_cost")}
    videos = {a["id"] for a in db.current_artifacts("edited_videos", "time", status=None)}
    assert videos and all(now[r["artifact_id"]] == r["wall_s"] for r in recorded if r["artifact_id"] in videos)
    rows = {r.stage: r for r in funnel(db, "time")}
    capsys.readouterr()
    print_tables(db, ["time"], [again.run_id])
    table = capsys.readouterr().out.splitlines()
    cells = next(line for line in table if line.strip().startswith("time")).split()[1:len(THEME_STAGES) + 1]
    by_stage = dict(zip([a for a, _, _ in THEME_STAGES], map(int, cells)))
    for asset, _, _ in FUNNEL_STAGES[:-1]:
        assert rows[asset].kept == by_stage[asset], asset
        assert rows[asset].n_in == rows[asset].kept + sum(rows[asset].dropped.values()) + sum(rows[asset].failed.values())
    assert rows["sparkle_dataset"].kept == by_stage["curated_pairs"]
    assert rows["pair_scores"].spent_s > 0
    curated = rows["curated_pairs"]
    if curated.dropped:  # what the final filter dropped carries the compute of every stage before it
        assert curated.wasted_s > rows["edited_videos"].spent_s / rows["edited_videos"].n_in

    events = instance.fetch_materializations(dg.AssetKey("sparkle_dataset"), limit=1).records
    metadata = events[0].asset_materialization.metadata
    assert [r.data["stage"] for r in metadata["funnel"].value.records] == [a for a, _, _ in FUNNEL_STAGES]
    assert metadata["funnel_plot"].value.startswith("![funnel](data:image/png;base64,")
    assert Path(metadata["funnel_plot_path"].value).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    manifest = json.loads((home / "dataset" / "release_manifest" / "time.json").read_text())
    assert manifest["rows"] and all(r["cost"]["wall_s"] > 0 for r in manifest["rows"])
    row = db.query("SELECT id FROM artifact WHERE kind = 'dataset_row' AND theme = 'time' LIMIT 1")[0]["id"]
    assert main(["--home", str(home), "lineage", "cost", row]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert {"source_clips", "foreground_masks", "edited_videos", "pair_scores"} <= set(cost["by_stage"])
    assert cost["total"]["wall_s"] == pytest.approx(sum(s["wall_s"] for s in cost["by_stage"].values()), abs=1e-3)
    assert main(["--home", str(home), "report", "--theme", "time"]) == 0
    out = capsys.readouterr().out
    assert "theme time" in out and "pair_scores" in out and "foreground_masks" in out
    assert main(["--home", str(home), "plan", "--clips", "1000"]) == 0
    out = capsys.readouterr().out
    assert "plan for 1,000 source clips, themes: time" in out and "pairs expected:" in out
    assert main(["--home", str(home), "plan", "--clips", "1000", "--themes", "weather"]) == 2
    assert "no measurements for theme(s) weather" in capsys.readouterr().err


def test_the_funnel_in_the_ui(costed_home, tmp_path):
    """The dataset asset's page in the real UI (webserver and Chromium): the funnel table with every
    stage, and the plot, decoded."""
    browser_path = chromium()
    from playwright.sync_api import expect, sync_playwright

    home = costed_home["home"]
    env = {**os.environ, **costed_home["env"], "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with dagster_webserver(env, cwd=home / "dagster", timeout=90) as base:
        shot = Path(os.environ.get("SPARKLE_SCREENSHOT_DIR", tmp_path))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(f"{base}/assets/sparkle_dataset?partition=time&view=events")
            skip = page.get_by_role("button", name="Skip")  # the community pop-up on a first visit
            table = page.locator("table", has_text="wasted_s").last
            expect(table).to_be_visible(timeout=60_000)
            if skip.count():
                skip.first.click()
            for stage in ("instructions", "pair_scores", "curated_pairs", "sparkle_dataset"):
                expect(table.get_by_text(stage, exact=True)).to_be_visible()
            page.screenshot(path=str(shot / "funnel_table.png"), full_page=True)
            page.get_by_text("[Show Markdown]").first.click()
            plot = page.locator('img[src^="data:image/png;base64,"]').first
            expect(plot).to_be_visible()
            assert plot.evaluate("e => e.complete && e.naturalWidth") > 400  # decoded, not a broken image
            page.screenshot(path=str(shot / "funnel_plot.png"))
            browser.close()
        assert (shot / "funnel_plot.png").stat().st_size > 10_000
