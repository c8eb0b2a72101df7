"""One small Dagster run shared by the tests that compare executors or lineage backends: the
theme-independent assets on two tiny clips (128x96, 17 frames), in a home of their own."""

from __future__ import annotations

from pathlib import Path


def theme_independent_run(folder: Path, home: Path, env: dict[str, str], monkeypatch) -> Path:
    """Materialize the theme-independent assets from the two tiny clips in `folder` (made on first
    use) into `home`, with the environment `env` (e.g. SPARKLE_EXECUTOR, SPARKLE_LINEAGE) set for the
    run only; returns the home."""
    import dagster as dg

    from sparkle_assets.core.resources import default_resources
    from sparkle_assets.definitions import THEME_INDEPENDENT
    from test_theme_assets import SMALL, make_subject_clip

    if not folder.is_dir():
        folder.mkdir(parents=True)
        make_subject_clip(folder / "a.mp4", seed=1)
        make_subject_clip(folder / "b.mp4", seed=2)
    with monkeypatch.context() as m:
        for key, value in {"SPARKLE_SOURCE_FOLDERS": str(folder), "SPARKLE_BUNDLED": "0", "SPARKLE_HOME": str(home),
                           **env}.items():
            m.setenv(key, value)
        result = dg.materialize(THEME_INDEPENDENT, resources=default_resources(), run_config=SMALL,
                                instance=dg.DagsterInstance.ephemeral())
        assert result.success
    return home
