"""A stand-in for Kiwi-Edit's demo.py: the same flags; applies the checkpoint's colour shift."""

import argparse
import sys

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt_path", required=True)
    for name in ["--video_path", "--prompt", "--ref_image", "--device"]:
        p.add_argument(name, type=str, default=None)
    p.add_argument("--save_path", default="./output/demo_output.mp4")
    for name in ["--max_pixels", "--max_frame", "--seed"]:
        p.add_argument(name, type=int, default=0)
    args = p.parse_args()
    from safetensors.numpy import load_file

    from sparkle_model.video import read_video, write_video

    shift = load_file(args.ckpt_path)["dit.shift"]
    frames = read_video(args.video_path, args.max_frame).astype(np.float32) / 255.0
    write_video(args.save_path, (np.clip(frames + shift, 0, 1) * 255).astype(np.uint8), fps=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
