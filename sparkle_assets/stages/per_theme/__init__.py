"""Per-theme stages (dynamic partition `theme`): instructions, edited_first_frames, background_plates,
background_videos, guidance_videos, edited_videos, pair_scores, curated_pairs."""
