"""Theme-independent stages, once per source clip: source_clips, static_clips, foreground_masks, clean_backgrounds."""
