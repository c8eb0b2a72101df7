"""The code location's shape: no stage imports another stage, and the asset graph is pinned by a
snapshot, so a change to it (a dependency, a partition, a pool, a code version) is a visible diff."""

from __future__ import annotations

import ast
import copy
import os
from pathlib import Path

import pytest

from graph_snapshot import SNAPSHOT, graph_diff, graph_of, text_of

STAGES = Path(__file__).resolve().parent.parent / "sparkle_assets" / "stages"


def stage_imports(path: Path, source: str | None = None) -> list[str]:
    """The sparkle_assets modules one stage module imports, as absolute dotted names."""
    package = ["sparkle_assets", *path.relative_to(STAGES.parent).with_suffix("").parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found += [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [n for n in found if n.startswith("sparkle_assets.")]


def test_no_stage_imports_another_stage():
    modules = [p for p in STAGES.rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) >= 14
    offenders = {}
    for path in modules:
        bad = [n for n in stage_imports(path) if n.startswith("sparkle_assets.stages")]
        if bad:
            offenders[str(path.relative_to(STAGES))] = bad
    assert not offenders, f"stage modules must import only the core: {offenders}"


def test_import_parser_sees_a_stage_import():
    """The check above can fail: relative and absolute imports of another stage are found."""
    fake = STAGES / "per_theme" / "fake_stage.py"
    found = stage_imports(fake, "from .instructions import STAGE\nfrom ..per_clip import static_clips\n"
                                "import sparkle_assets.stages.release.bench_split\nfrom ...core import stage\n")
    assert "sparkle_assets.stages.per_theme.instructions" in found
    assert "sparkle_assets.stages.per_clip.static_clips" in found
    assert "sparkle_assets.stages.release.bench_split" in found
    assert "sparkle_assets.core.stage" in found


def test_asset_graph_matches_snapshot():
    from sparkle_assets.definitions import defs

    current = graph_of(defs)
    if os.environ.get("SPARKLE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text_of(current))
    recorded = __import__("json").loads(SNAPSHOT.read_text())
    diff = graph_diff(recorded, current)
    assert not diff, f"the asset graph changed; if intended, regenerate the snapshot:\n{diff}"


def test_a_changed_dependency_shows_as_a_readable_diff():
    from sparkle_assets.definitions import defs

    recorded = graph_of(defs)
    changed = copy.deepcopy(recorded)
    changed["assets"]["guidance_videos"]["deps"].remove("foreground_masks")
    diff = graph_diff(recorded, changed)
    assert '"guidance_videos": {' in diff or "guidance_videos" in diff
    removed = [line for line in diff.splitlines() if line.startswith("-") and "foreground_masks" in line]
    assert removed == ['-    "foreground_masks",'], diff
    with pytest.raises(AssertionError, match="foreground_masks"):
        assert not diff, diff
