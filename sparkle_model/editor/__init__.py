"""The trainable video editor, no Dagster: a Wan-class video diffusion transformer that edits a source
video by an instruction, conditioned in context (source latents as extra frames at timestep 0) and
trained with flow matching.

    codecs.py   video <-> latents: space-to-depth pixels (tiny, no weights) or a Wan VAE (lora)
    text.py     instruction -> token states: all-MiniLM-L6-v2 (shipped in a package), a hashed
                fallback, or the base pipeline's UMT5
    model.py    the in-context editor (loss, sampling) and the backends that build it: tiny, lora
    data.py     decoding training pairs and bench sources at the training size
    train.py    the training loop (accelerate; resumable state; progress events)
    run_files.py   what a finished run leaves beside its weights: editor_config.json, loss.json, loss.png
    infer.py    editing whole videos window by window with a saved checkpoint
    kiwi.py     Kiwi-Edit's own train.py / demo.py: its CSV, its command lines, its loss lines
"""
