"""The theme taxonomy: one YAML file per theme, validated into `Theme` objects.

A theme file holds its name, its `render` kind and a list of subthemes, each with scenes. A scene
says what it looks like (`looks`), its `lighting`, and what moves in it (`motion`, from
`MOTION_CUES`). The default backend builds a `procedural` scene from its `layout` (see
scene_render.py) and a `transform` scene from its `grade` and `effects` (see scene_grade.py).

Every problem is reported as `TaxonomyError` naming the file and the field, e.g.
``themes/weather.yaml: subthemes[0].scenes[1].motion[0]: unknown motion cue 'lava' (known: ...)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MOTION_CUES = ("clouds", "water", "foliage", "fog", "rain", "snow", "petals", "leaves", "embers", "dust",
               "lights", "traffic", "smoke")
RENDER_KINDS = ("procedural", "transform")
SKIES = ("day", "dawn", "golden", "dusk", "night", "overcast")
TERRAINS = ("none", "hills", "mountains", "dunes", "skyline", "cliffs", "forest")
GROUNDS = ("grass", "meadow", "field", "vineyard", "water", "sand", "desert", "rock", "snow", "street")
FEATURES = ("trees", "palms", "buildings", "lights", "sun", "moon", "stars", "road", "flowers", "rows")
GRADE_KEYS = {"tint": list, "tint_strength": float, "brightness": float, "contrast": float,
              "saturation": float, "foliage_hue": float}
EFFECTS = ("bloom", "haze", "sun_glow", "snow_cover", "night_lights", "vignette", "sepia", "grain",
           "scanlines", "neon_edges", "painterly", "sketch", "cel")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")  # theme names are partition keys and file names


class TaxonomyError(ValueError):
    """A theme file that cannot be used; the message names the file and the field."""

    def __init__(self, path: str | Path, where: str, problem: str):
        self.path, self.where, self.problem = str(path), where, problem
        super().__init__(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")


@dataclass(frozen=True)
class Scene:
    name: str
    subtheme: str
    looks: str
    lighting: str
    motion: tuple[str, ...]
    layout: dict = field(default_factory=dict)  # procedural themes
    grade: dict = field(default_factory=dict)  # transform themes
    effects: tuple[str, ...] = ()

    @property
    def keyword(self) -> str:
        """The paper's `chosen_keyword`: "subtheme: scene"."""
        return f"{self.subtheme}: {self.name}"

    def to_json(self) -> dict:
        return {"name": self.name, "subtheme": self.subtheme, "looks": self.looks, "lighting": self.lighting,
                "motion": list(self.motion), "layout": self.layout, "grade": self.grade,
                "effects": list(self.effects)}

    @classmethod
    def from_json(cls, d: dict) -> Scene:
        return cls(d["name"], d["subtheme"], d["looks"], d["lighting"], tuple(d["motion"]), d.get("layout", {}),
                   d.get("grade", {}), tuple(d.get("effects", ())))


@dataclass(frozen=True)
class Theme:
    name: str
    edit_type: str
    description: str
    render: str
    openers: tuple[str, ...]
    subthemes: dict[str, tuple[Scene, ...]]
    path: str

    @property
    def scenes(self) -> list[Scene]:
        return [s for scenes in self.subthemes.values() for s in scenes]


def _text(node: dict, key: str, path, where: str, max_len: int = 300) -> str:
    if key not in node:
        raise TaxonomyError(path, f"{where}{key}", "missing field")
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise TaxonomyError(path, f"{where}{key}", f"must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise TaxonomyError(path, f"{where}{key}", f"longer than {max_len} characters")
    return value.strip()


def _list(node: dict, key: str, path, where: str, required: bool = True) -> list:
    if key not in node:
        if required:
            raise TaxonomyError(path, f"{where}{key}", "missing field")
        return []
    value = node[key]
    if not isinstance(value, list):
        raise TaxonomyError(path, f"{where}{key}", f"must be a list, got {type(value).__name__}")
    return value


def _choices(values: list, allowed: tuple[str, ...], path, where: str, what: str) -> tuple[str, ...]:
    for i, v in enumerate(values):
        if v not in allowed:
            raise TaxonomyError(path, f"{where}[{i}]", f"unknown {what} {v!r} (known: {', '.join(allowed)})")
    if len(set(values)) != len(values):
        raise TaxonomyError(path, where, f"repeats a {what}")
    return tuple(values)


def _layout(node: Any, path, where: str) -> dict:
    if not isinstance(node, dict):
        raise TaxonomyError(path, where, "missing field (procedural themes need a layout mapping)")
    out = {}
    for key, allowed in (("sky", SKIES), ("terrain", TERRAINS), ("ground", GROUNDS)):
        if node.get(key) not in allowed:
            raise TaxonomyError(path, f"{where}.{key}", f"must be one of {', '.join(allowed)}, got {node.get(key)!r}")
        out[key] = node[key]
    horizon = node.get("horizon", 0.5)
    if not isinstance(horizon, (int, float)) or not 0.15 <= horizon <= 0.85:
        raise TaxonomyError(path, f"{where}.horizon", f"must be a number in [0.15, 0.85], got {horizon!r}")
    out["horizon"] = float(horizon)
    band = node.get("water_band", 0.0)
    if not isinstance(band, (int, float)) or not 0.0 <= band <= 0.5:
        raise TaxonomyError(path, f"{where}.water_band", f"must be a number in [0, 0.5], got {band!r}")
    out["water_band"] = float(band)
    out["features"] = list(_choices(_list(node, "features", path, f"{where}.", required=False), FEATURES, path,
                                    f"{where}.features", "feature"))
    unknown = set(node) - {"sky", "terrain", "ground", "horizon", "water_band", "features"}
    if unknown:
        raise TaxonomyError(path, f"{where}.{sorted(unknown)[0]}", "unknown field")
    return out


def _grade(node: Any, path, where: str) -> dict:
    if not isinstance(node, dict):
        raise TaxonomyError(path, where, "missing field (transform themes need a grade mapping)")
    out = {}
    for key, value in node.items():
        if key not in GRADE_KEYS:
            raise TaxonomyError(path, f"{where}.{key}", f"unknown field (known: {', '.join(GRADE_KEYS)})")
        if key == "tint":
            if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255
                                                                        for v in value)):
                raise TaxonomyError(path, f"{where}.tint", f"must be [r, g, b] with 0-255 integers, got {value!r}")
            out[key] = list(value)
        else:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TaxonomyError(path, f"{where}.{key}", f"must be a number, got {value!r}")
            limit = (-180, 180) if key == "foliage_hue" else (0.0, 3.0)
            if not limit[0] <= value <= limit[1]:
                raise TaxonomyError(path, f"{where}.{key}", f"must be in [{limit[0]}, {limit[1]}], got {value}")
            out[key] = float(value)
    return out


def parse_theme(path: str | Path) -> Theme:
    """Read and validate one theme file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(path, "", f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TaxonomyError(path, "", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TaxonomyError(path, "", "must be a YAML mapping with name, render and subthemes")
    name = _text(data, "name", path, "")
    if not NAME_RE.fullmatch(name):
        raise TaxonomyError(path, "name", f"must be lower-case letters, digits and _ (it is a partition key), got {name!r}")
    if name != path.stem:
        raise TaxonomyError(path, "name", f"{name!r} does not match the file name {path.name!r}")
    render = data.get("render")
    if render not in RENDER_KINDS:
        raise TaxonomyError(path, "render", f"must be one of {', '.join(RENDER_KINDS)}, got {render!r}")
    openers = [o.strip() for o in _list(data, "openers", path, "")]
    if len(openers) < 2 or not all(isinstance(o, str) and o.strip() for o in openers):
        raise TaxonomyError(path, "openers", "needs at least two non-empty sentence openers")
    subthemes: dict[str, tuple[Scene, ...]] = {}
    scene_names: set[str] = set()
    for i, sub in enumerate(_list(data, "subthemes", path, "")):
        where = f"subthemes[{i}]."
        if not isinstance(sub, dict):
            raise TaxonomyError(path, f"subthemes[{i}]", "must be a mapping with name and scenes")
        sub_name = _text(sub, "name", path, where, 60)
        if sub_name in subthemes:
            raise TaxonomyError(path, f"{where}name", f"duplicate subtheme name {sub_name!r}")
        scenes = []
        for j, sc in enumerate(_list(sub, "scenes", path, where)):
            sw = f"{where}scenes[{j}]."
            if not isinstance(sc, dict):
                raise TaxonomyError(path, f"{where}scenes[{j}]", "must be a mapping")
            scene_name = _text(sc, "name", path, sw, 80)
            if scene_name in scene_names:
                raise TaxonomyError(path, f"{sw}name", f"duplicate scene name {scene_name!r}")
            scene_names.add(scene_name)
            motion = _list(sc, "motion", path, sw)
            if not motion:
                raise TaxonomyError(path, f"{sw}motion", "needs at least one motion cue")
            scenes.append(Scene(
                name=scene_name, subtheme=sub_name, looks=_text(sc, "looks", path, sw),
                lighting=_text(sc, "lighting", path, sw),
                motion=_choices(motion, MOTION_CUES, path, f"{sw}motion", "motion cue"),
                layout=_layout(sc.get("layout"), path, f"{sw}layout") if render == "procedural" else {},
                grade=_grade(sc.get("grade"), path, f"{sw}grade") if render == "transform" else {},
                effects=_choices(_list(sc, "effects", path, sw, required=False), EFFECTS, path, f"{sw}effects",
                                 "effect") if render == "transform" else ()))
        if not scenes:
            raise TaxonomyError(path, f"{where}scenes", "needs at least one scene")
        subthemes[sub_name] = tuple(scenes)
    if not subthemes:
        raise TaxonomyError(path, "subthemes", "needs at least one subtheme")
    return Theme(name=name, edit_type=str(data.get("edit_type", name)), description=str(data.get("description", "")),
                 render=render, openers=tuple(openers), subthemes=subthemes, path=str(path))


def load_taxonomy(directory: str | Path) -> tuple[dict[str, Theme], dict[str, str]]:
    """Every `*.yaml` theme in a directory: (themes by name, errors by file name)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TaxonomyError(directory, "", "themes directory does not exist (set SPARKLE_THEMES_DIR)")
    themes, errors = {}, {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            theme = parse_theme(path)
        except TaxonomyError as exc:
            errors[path.name] = str(exc)
            continue
        themes[theme.name] = theme
    return themes, errors
