"""The stages, one module per asset, in pipeline order: `per_clip` (theme-independent, once per
source clip), `per_theme` (the `theme` partition's stages, stage 2 to curation) and `release` (the
export and the bench split). Each imports the core, never another stage."""
