"""A stand-in for Kiwi-Edit's train.py: the same command line (DiffSynth's `wan_parser` flags, prefix
abbreviations allowed), the same CSV reading, loss lines and checkpoint names; the "model" is a
per-channel colour shift fitted by gradient descent, so the loss really falls."""

import argparse
import csv
import json
import os
import sys

import numpy as np


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    text = ["--dataset_base_path", "--vid_dataset_metadata_path", "--vid_ref_dataset_metadata_path",
            "--img_dataset_metadata_path", "--data_file_keys", "--model_paths", "--model_id_with_origin_paths",
            "--audio_processor_config", "--output_path", "--remove_prefix_in_ckpt", "--trainable_models",
            "--lora_base_model", "--lora_target_modules", "--dit_lora_base_model", "--dit_lora_target_modules",
            "--lora_checkpoint", "--project_name", "--exp_name", "--extra_inputs", "--checkpoint", "--mllm_model"]
    ints = ["--max_pixels", "--height", "--width", "--num_frames", "--dataset_repeat", "--num_epochs", "--lora_rank",
            "--dit_lora_rank", "--gradient_accumulation_steps", "--save_steps", "--dataset_num_workers",
            "--num_image_queries", "--num_video_queries", "--num_ref_queries", "--max_object_token", "--mllm_max_frame",
            "--mllm_max_pixels_per_frame"]
    floats = ["--learning_rate", "--max_timestep_boundary", "--min_timestep_boundary", "--weight_decay"]
    for name in text:
        p.add_argument(name, type=str, default=None)
    for name in ints:
        p.add_argument(name, type=int, default=None)
    for name in floats:
        p.add_argument(name, type=float, default=None)
    for name in ["--use_gradient_checkpointing_offload", "--find_unused_parameters"]:
        p.add_argument(name, action="store_true")
    return p


def main() -> int:
    args = parser().parse_args()
    from safetensors.numpy import load_file, save_file

    from sparkle_model.video import read_video

    with open(args.vid_dataset_metadata_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"prompt", "src_video", "tgt_video"} <= set(rows[0]):
        print("bad metadata csv", file=sys.stderr)
        return 2
    pairs = []
    for r in rows:
        src = read_video(os.path.join(args.dataset_base_path, r["src_video"]), args.num_frames).mean((0, 1, 2))
        tgt = read_video(os.path.join(args.dataset_base_path, r["tgt_video"]), args.num_frames).mean((0, 1, 2))
        pairs.append((src / 255.0, tgt / 255.0))
    shift = load_file(args.checkpoint)["dit.shift"] if args.checkpoint else np.zeros(3, np.float32)
    os.makedirs(args.output_path, exist_ok=True)
    step = 0
    for _ in range(args.num_epochs):
        for src, tgt in pairs:
            step += 1
            err = src + shift - tgt
            loss = float((err ** 2).mean())
            shift = (shift - args.learning_rate * 2 * err).astype(np.float32)
            print("loss: ", loss, "lr: ", args.learning_rate, flush=True)
            if args.save_steps and step % args.save_steps == 0:
                save_file({"dit.shift": shift}, os.path.join(args.output_path, f"step-{step}.safetensors"))
    if not args.save_steps:
        save_file({"dit.shift": shift}, os.path.join(args.output_path, f"epoch-{args.num_epochs}.safetensors"))
    elif step % args.save_steps:
        save_file({"dit.shift": shift}, os.path.join(args.output_path, f"step-{step}.safetensors"))
    print(json.dumps({"stand-in": "done", "steps": step}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
