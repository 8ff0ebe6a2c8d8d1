"""PGATModel: the progressive pose-conditioned U-Net of the paper (§3.1).

Layout at stage ``R`` (channels ``C(s)`` from ``pgat.stages``; ``C(32) = 1024`` in the paper's size)::

    reference (3, R, R)
      from_rgb        1x1 conv, 3 -> C(2R)
      encoder.b{R}    block, C(2R) -> C(R)   ── skip ──┐
      avg-pool                                         │
      ...                                              │
      encoder.b64     block, C(128) -> C(64) ─ skip ─┐ │
      avg-pool                                       │ │
      encoder.b32     block, C(64) -> C(32)          │ │   the 32² bottleneck, 1024 channels
      ⊕ 18 pose maps (Eq. 1, made at 32²)            │ │
      decoder.b32     block, C(32) + 18 -> C(32)     │ │
      nearest up-sample, ⊕ skip ─────────────────────┘ │
      decoder.b64     block, C(32) + C(64) -> C(64)    │
      ...                                              │
      decoder.b{R}    block, C(R/2) + C(R) -> C(R) ────┘
      to_rgb          1x1 conv, C(R) -> 3, tanh

A block is [3x3 conv -> BatchNorm -> LeakyReLU(0.2)] x 2. Blocks are named by resolution, so their
state-dict keys do not change as the network grows. ``from_rgb`` outputs the channels the block one
level further out would produce, ``C(2R)``: growing then plugs a new outermost encoder block in front
of the old one without reshaping anything that was trained. ``to_rgb`` ends in ``tanh`` so that
outputs are in [-1, 1] like the inputs.

Beyond the paper (DESIGN.md §1b), three options make the output take the target pose; all are off by default, and
with all of them off the network, its state-dict keys and its outputs are exactly the paper's:

- ``reference_pose``: the reference's own 18 pose maps beside the target's at the bottleneck;
- ``warp_skips``: every skip and the bottleneck are warped part by part from the reference pose to the target pose
  (`pgat.parts.warp`, the affine part transforms of Deformable GANs) before the decoder sees them, with the ten
  target part masks as extra channels. ``warp_keep_unwarped`` also keeps the unwarped features beside the warped
  ones, for what no part covers (background, hair, a skirt) and for the decoder to choose;
- ``pose_every_scale``: the target pose maps at every decoder resolution, not only at the bottleneck;
- ``warp_residual``: the output is the part-warped reference image (`pgat.parts.warp_image`, the training-free
  baseline) plus what the network learns to add, in tanh's pre-activation; ``to_rgb`` starts at zero, so an
  untrained network returns the warp and training starts from it instead of from a grey image.

They add input channels to the decoder blocks' first convolutions and no modules, so block names stay the same.
Models with ``reference_pose``, ``warp_skips`` or ``warp_residual`` need the reference's keypoints
(`needs_reference_pose`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from ..cpu_memory import reuse_freed_memory
from ..parts import NUM_PARTS, warp as warp_parts, warp_image
from ..pose import NUM_KEYPOINTS, heatmaps
from ..stages import RESOLUTIONS, channels_at, check_resolution


@dataclass
class PGATModelOutput(BaseOutput):
    """Output of `PGATModel`.

    Args:
        image (`torch.Tensor` of shape `(batch, 3, R, R)`): the reference person in the target pose, in [-1, 1].
    """

    image: torch.Tensor


class ConvBlock(nn.Module):
    """[3x3 conv -> BatchNorm -> LeakyReLU(0.2)] x 2."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        return self.act(self.norm2(self.conv2(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold each eval-mode BatchNorm into the convolution before it (``y = s * conv(x) + t`` is one conv)."""
        for conv, norm in (("conv1", "norm1"), ("conv2", "norm2")):
            c, n = getattr(self, conv), getattr(self, norm)
            # folded in float32 and cast back, so a bf16/fp16 model is rounded once, not at every step
            weight, bias = fuse_conv_bn_weights(
                c.weight.float(), c.bias.float(), n.running_mean.float(), n.running_var.float(), n.eps,
                n.weight.float(), n.bias.float(),
            )
            c.weight = nn.Parameter(weight.to(c.weight.dtype), requires_grad=False)
            c.bias = nn.Parameter(bias.to(c.bias.dtype), requires_grad=False)
            setattr(self, norm, nn.Identity())
        # the conv's output is a fresh tensor nobody else holds: the activation may overwrite it
        self.act = nn.LeakyReLU(self.act.negative_slope, inplace=True)


class PGATModel(ModelMixin, ConfigMixin):
    r"""The PGAT generator at one stage of progressive training.

    Args:
        resolution (`int`, *optional*, defaults to 64): side of the square images of this stage (64 ... 1024).
        bottleneck_channels (`int`, *optional*, defaults to 1024): channels at the bottleneck; every other
            width follows from it (halved per doubling of the spatial size).
        bottleneck_size (`int`, *optional*, defaults to 32): side of the bottleneck feature map.
        num_keypoints (`int`, *optional*, defaults to 18): pose maps concatenated at the bottleneck.
        sigma (`float`, *optional*, defaults to 3.2): Gaussian width of the pose maps in pixels of a
            256-wide image (Eq. 1); it is scaled to the bottleneck grid, where the maps are made.
        in_channels (`int`, *optional*, defaults to 3), out_channels (`int`, *optional*, defaults to 3): image channels.
        min_channels (`int`, *optional*, defaults to 4): floor on block widths for tiny models.
        negative_slope (`float`, *optional*, defaults to 0.2): LeakyReLU slope.
        reference_pose (`bool`, *optional*, defaults to `False`): also concatenate the reference's own pose maps at
            the bottleneck (not in the paper).
        warp_skips (`bool`, *optional*, defaults to `False`): warp the bottleneck and every skip per body part to the
            target pose, with the part masks as extra channels (not in the paper).
        warp_keep_unwarped (`bool`, *optional*, defaults to `True`): with ``warp_skips``, keep the unwarped features
            beside the warped ones; ignored otherwise.
        pose_every_scale (`bool`, *optional*, defaults to `False`): concatenate the target pose maps at every decoder
            resolution (not in the paper).
        warp_residual (`bool`, *optional*, defaults to `False`): add the output to the part-warped reference image
            instead of making it from nothing (not in the paper).

    The defaults build the paper's model; tests and CPU demos use the same class with a small
    ``bottleneck_channels``.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        resolution: int = 64,
        bottleneck_channels: int = 1024,
        bottleneck_size: int = 32,
        num_keypoints: int = NUM_KEYPOINTS,
        sigma: float = 3.2,
        in_channels: int = 3,
        out_channels: int = 3,
        min_channels: int = 4,
        negative_slope: float = 0.2,
        reference_pose: bool = False,
        warp_skips: bool = False,
        warp_keep_unwarped: bool = True,
        pose_every_scale: bool = False,
        warp_residual: bool = False,
    ):
        super().__init__()
        for name, value in (("reference_pose", reference_pose), ("warp_skips", warp_skips),
                            ("warp_keep_unwarped", warp_keep_unwarped), ("pose_every_scale", pose_every_scale),
                            ("warp_residual", warp_residual)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False, got {value!r}")
        check_resolution(resolution)
        if bottleneck_size >= resolution or resolution % bottleneck_size or (resolution // bottleneck_size) & (resolution // bottleneck_size - 1):
            raise ValueError(f"`bottleneck_size` must be a power-of-two fraction of `resolution` ({resolution}), got {bottleneck_size}")
        if bottleneck_channels < 1 or min_channels < 1:
            raise ValueError(f"`bottleneck_channels` and `min_channels` must be positive, got {bottleneck_channels} and {min_channels}")

        ch = self._channels
        sizes = self._sizes()  # bottleneck first: 32, 64, ..., R
        self.from_rgb = nn.Conv2d(in_channels, ch(2 * resolution), 1)
        self.encoder = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        for s in sizes:
            self.encoder[f"b{s}"] = ConvBlock(ch(2 * s), ch(s), negative_slope)
        self.decoder[f"b{bottleneck_size}"] = ConvBlock(
            self._skip_channels(bottleneck_size) + num_keypoints * (1 + reference_pose), ch(bottleneck_size), negative_slope
        )
        for s in sizes[1:]:
            self.decoder[f"b{s}"] = ConvBlock(ch(s // 2) + self._skip_channels(s) + num_keypoints * pose_every_scale, ch(s), negative_slope)
        self.to_rgb = nn.Conv2d(ch(resolution), out_channels, 1)
        self.apply(_he_init)
        if warp_residual:  # an untrained network adds nothing to the warp (and each grown to_rgb starts there again)
            nn.init.zeros_(self.to_rgb.weight)
        self._fused = False
        self._channels_last = False  # set by fuse(): features run in channels-last memory format

    # ---------------------------------------------------------------------------------------
    def _channels(self, size: int) -> int:
        c = self.config
        return channels_at(size, c.bottleneck_channels, c.bottleneck_size, c.min_channels)

    def _skip_channels(self, size: int) -> int:
        """Channels the decoder block at ``size`` takes from the encoder side: the skip, warped (+ part masks, and
        the unwarped skip too if kept) when ``warp_skips``."""
        c = self.config
        if not c.warp_skips:
            return self._channels(size)
        return self._channels(size) * (1 + c.warp_keep_unwarped) + NUM_PARTS

    def _sizes(self) -> List[int]:
        s, out = self.config.bottleneck_size, []
        while s <= self.config.resolution:
            out.append(s)
            s *= 2
        return out

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def is_fused(self) -> bool:
        """Whether `fuse` turned this model into its inference form."""
        return self._fused

    @property
    def needs_reference_pose(self) -> bool:
        """Whether `forward` / `decode` need ``reference_keypoints`` (``reference_pose`` or ``warp_skips``)."""
        return bool(self.config.reference_pose or self.config.warp_skips or self.config.warp_residual)

    @property
    def pose_sigma(self) -> float:
        """Sigma of the pose maps in bottleneck pixels."""
        return self.config.sigma * self.config.bottleneck_size / 256.0

    def pose_maps(self, target_keypoints: torch.Tensor, size: Optional[int] = None) -> torch.Tensor:
        """Eq. (1) on a ``size`` grid (default: the bottleneck), from keypoints in pixels of the stage resolution;
        sigma scales with the grid (3.2 px of a 256-wide image)."""
        c = self.config
        size = size or c.bottleneck_size
        scale = size / c.resolution
        kps = (target_keypoints + 0.5) * scale - 0.5  # pixel-centre convention on both grids
        kps = torch.where((target_keypoints < 0).any(-1, keepdim=True), torch.full_like(kps, -1.0), kps)
        return heatmaps(kps, size, size, c.sigma * size / 256.0)

    def check_inputs(self, reference: torch.Tensor, target_keypoints: torch.Tensor) -> None:
        self._check_reference(reference)
        self._check_keypoints(target_keypoints, reference.shape[0])

    def _check_reference(self, reference: torch.Tensor) -> None:
        c = self.config
        r = c.resolution
        if not isinstance(reference, torch.Tensor) or reference.ndim != 4:
            got = tuple(reference.shape) if isinstance(reference, torch.Tensor) else type(reference).__name__
            raise ValueError(f"`reference` must be a (B, {c.in_channels}, {r}, {r}) tensor in [-1, 1], got {got}")
        b, ch, h, w = reference.shape
        if ch != c.in_channels:
            raise ValueError(f"`reference` must have {c.in_channels} channels, got {ch} (shape {tuple(reference.shape)})")
        if h != w:
            raise ValueError(f"`reference` must be square ({r}x{r}); got {h}x{w}. Letterbox it first (pgat.pose.letterbox)")
        if h != r:
            raise ValueError(f"`reference` must be {r}x{r} for this stage-{r} model, got {h}x{w}")

    def _check_keypoints(self, target_keypoints: torch.Tensor, batch: Optional[int], name: str = "target_keypoints", batch_text: Optional[str] = None) -> None:
        c = self.config
        ok = isinstance(target_keypoints, torch.Tensor) and target_keypoints.ndim == 3 and target_keypoints.shape[1:] == (c.num_keypoints, 2)
        if not ok or (batch is not None and target_keypoints.shape[0] != batch):
            got = tuple(target_keypoints.shape) if isinstance(target_keypoints, torch.Tensor) else type(target_keypoints).__name__
            raise ValueError(f"`{name}` must be a ({batch_text or batch or 'B'}, {c.num_keypoints}, 2) tensor of (x, y) pixels, got {got}")
        if not torch.is_floating_point(target_keypoints):
            raise ValueError(f"`{name}` must be floating point, got {target_keypoints.dtype}")
        # (meta tensors carry no values: shape checks only, so the paper-size model can be traced without memory)
        if target_keypoints.device.type != "meta" and not torch.isfinite(target_keypoints).all():
            raise ValueError(f"`{name}` contains NaN or infinite coordinates; mark a missing point as (-1, -1)")

    def _check_reference_keypoints(self, reference_keypoints: Optional[torch.Tensor], batch: int) -> None:
        if not self.needs_reference_pose:
            return  # the paper's network does not look at the reference's pose: accepted and unused
        if reference_keypoints is None:
            on = [n for n in ("reference_pose", "warp_skips", "warp_residual") if self.config[n]]
            raise ValueError(
                f"this PGATModel is configured with {' and '.join(f'{n}=True' for n in on)}, so it needs "
                f"`reference_keypoints`, the reference person's (B, {self.config.num_keypoints}, 2) pose in pixels of "
                f"{self.config.resolution}; got None (the pipelines estimate it from the reference photo when not given)"
            )
        ok = isinstance(reference_keypoints, torch.Tensor) and reference_keypoints.ndim == 3 and reference_keypoints.shape[0] in (1, batch)
        self._check_keypoints(reference_keypoints, reference_keypoints.shape[0] if ok else batch, "reference_keypoints", f"1 or {batch}")

    # ---------------------------------------------------------------------------------------
    def forward(
        self,
        reference: torch.Tensor,
        target_keypoints: torch.Tensor,
        reference_keypoints: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ) -> Union[PGATModelOutput, Tuple[torch.Tensor]]:
        r"""
        Args:
            reference (`torch.Tensor`): ``(B, 3, R, R)`` reference images in [-1, 1].
            target_keypoints (`torch.Tensor`): ``(B, 18, 2)`` target pose, ``(x, y)`` in pixels of R; -1 = missing.
            reference_keypoints (`torch.Tensor`, *optional*): ``(B, 18, 2)`` the reference's own pose, in the same
                pixels; needed by a model with ``reference_pose`` or ``warp_skips`` (`needs_reference_pose`),
                accepted and unused by the paper's network.
            return_dict (`bool`, *optional*, defaults to `True`): return a `PGATModelOutput` instead of a tuple.
        """
        if isinstance(reference_keypoints, bool):  # the old positional `return_dict`
            raise ValueError("`reference_keypoints` must be a (B, 18, 2) tensor or None; pass `return_dict=` by name")
        self.check_inputs(reference, target_keypoints)
        image = self.decode(self.encode(reference), target_keypoints, reference_keypoints)
        if not return_dict:
            return (image,)
        return PGATModelOutput(image=image)

    def encode(self, reference: torch.Tensor) -> Dict[int, torch.Tensor]:
        r"""The encoder half: what the decoder needs from the reference, which does not depend on the pose.

        Args:
            reference (`torch.Tensor`): ``(B, 3, R, R)`` reference images in [-1, 1].

        Returns:
            `Dict[int, torch.Tensor]`: each encoder block's output keyed by its side: the skips, and the
            bottleneck at ``bottleneck_size``; with ``warp_residual`` also the reference image itself under key 0.
            `decode` turns them into images for any number of poses, so one reference shown in many poses (a video)
            is encoded once.
        """
        self._check_reference(reference)
        sizes = self._sizes()
        if self._channels_last:
            reference = reference.contiguous(memory_format=torch.channels_last)
        x = self.from_rgb(reference)
        features = {0: reference} if self.config.warp_residual else {}
        for s in reversed(sizes):
            x = self.encoder[f"b{s}"](x)
            features[s] = x
            if s != sizes[0]:
                x = F.avg_pool2d(x, 2)
        return features

    def decode(
        self, features: Dict[int, torch.Tensor], target_keypoints: torch.Tensor, reference_keypoints: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        r"""The decoder half: the encoded reference in the target poses.

        Args:
            features (`Dict[int, torch.Tensor]`): `encode`'s output, of batch ``B`` or 1 (one reference for
                every pose: it is broadcast, not copied, until the skip concatenation).
            target_keypoints (`torch.Tensor`): ``(B, 18, 2)`` target poses, ``(x, y)`` in pixels of R; -1 = missing.
            reference_keypoints (`torch.Tensor`, *optional*): ``(B or 1, 18, 2)`` the reference's pose; see `forward`.

        Returns:
            `torch.Tensor`: ``(B, 3, R, R)`` images in [-1, 1].
        """
        sizes = self._sizes()
        keys = [0, *sizes] if self.config.warp_residual else sizes
        if not isinstance(features, dict) or sorted(features) != keys:
            got = sorted(features) if isinstance(features, dict) else type(features).__name__
            raise ValueError(f"`features` must be this model's encode() output, keyed by {keys}; got {got}")
        self._check_keypoints(target_keypoints, None)
        b = target_keypoints.shape[0]
        fb = features[sizes[0]].shape[0]
        if fb not in (1, b):
            raise ValueError(f"`features` hold {fb} references for {b} target poses; expected 1 (shared) or {b}")

        c = self.config
        self._check_reference_keypoints(reference_keypoints, b)
        dtype = features[sizes[0]].dtype
        # poses and part geometry in float32 and cast: bf16 would round a keypoint at x = 1001 of a 1024² image to 1000
        tgt = target_keypoints.float()
        ref = reference_keypoints.float() if reference_keypoints is not None else None

        def skip(s):
            f = features[s]
            if not c.warp_skips:
                return [f.expand(b, *f.shape[1:]) if fb != b else f]
            # §1b: the reference's features moved part by part to where the target pose needs them
            warped, masks = warp_parts(f, ref, tgt, c.resolution)
            kept = [f.expand(b, *f.shape[1:])] if c.warp_keep_unwarped else []
            return [*kept, warped, masks.to(dtype)]

        # 1. inject the target pose at the bottleneck, Eq. (1) (and the reference's own, if configured)
        poses = [self.pose_maps(tgt).to(dtype)]
        if c.reference_pose:
            poses.append(self.pose_maps(ref).to(dtype).expand(b, -1, -1, -1))
        x = self.decoder[f"b{sizes[0]}"](self._join(*skip(sizes[0]), *poses))

        # 2. up-sample and decode with the skip connections
        for s in sizes[1:]:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            extra = [self.pose_maps(tgt, s).to(dtype)] if c.pose_every_scale else []
            x = self.decoder[f"b{s}"](self._join(x, *skip(s), *extra))
        out = self.to_rgb(x)
        if c.warp_residual:
            # 3. §1b: on top of the reference moved part by part, in tanh's pre-activation (float32: atanh near ±1)
            base = warp_image(features[0].float().contiguous(), ref, tgt).clamp(-0.999, 0.999)
            return torch.tanh(out.float() + torch.atanh(base)).to(out.dtype).contiguous()
        return torch.tanh(out).contiguous()  # 3 channels: the usual layout costs nothing

    def _join(self, *parts: torch.Tensor) -> torch.Tensor:
        """``torch.cat(parts, dim=1)`` in the model's memory format. Left to itself, ``cat`` of a reference's skip
        broadcast to a batch of poses (`decode`) comes out NCHW, and every channels-last convolution after it
        reorders its input: measured 0.70x for a batch of 4 poses at 1024² (``benchmarks/fast_path.py``)."""
        if not self._channels_last:
            return torch.cat(parts, dim=1)
        a = parts[0]
        n, _, h, w = a.shape
        out = torch.empty(n, sum(p.shape[1] for p in parts), h, w, dtype=a.dtype, device=a.device, memory_format=torch.channels_last)
        return torch.cat(parts, dim=1, out=out)

    # ---------------------------------------------------------------------------------------
    def fuse(self, channels_last: bool = True, compile: bool = False) -> "PGATModel":
        r"""Turn this model into its inference form, in place, and return it.

        Every BatchNorm is folded into the 3x3 convolution before it, using its running statistics (the model is
        put in eval mode first), and the LeakyReLUs work in place. Outputs equal the eval-mode outputs of the
        unfused model within float rounding; calling it again only sets the memory format.

        Args:
            channels_last (`bool`, *optional*, defaults to `True`): also keep the weights, and run the features, in
                channels-last memory format, which oneDNN's convolutions run faster: the paper-size model 1.10x at
                128² and 256², 1.15x at 512², 1.20x at 1024² on a 2-core AVX-512 CPU (``benchmarks/BENCHMARKS.md``;
                1.15-1.25x from 256² up on an AVX2 one). Images come out in the usual layout.
            compile (`bool`, *optional*, defaults to `False`): also ``torch.compile`` `encode` and `decode` (what
                `forward` and the pipelines call); it cannot be undone. Off by default: on that CPU it ran
                1.00-1.03x as fast as eager, after a first call of 15 s (128²) to 20 s (1024²) with an empty
                compile cache.

        On the CPU it also makes this process keep and reuse freed memory (`pgat.cpu_memory.reuse_freed_memory`):
        the 64-128 MB feature maps of 512² and 1024² would otherwise be fresh pages, faulted in and zeroed by the
        kernel at every forward. Measured 1.39x at 1024², 1.23x at 512², 1.15x at 256² on that CPU. It is
        process-wide (the memory of the largest forward stays with the process); ``PGAT_REUSE_CPU_MEMORY=0`` turns
        it off.

        A fused model is for inference only, and says so with an error when asked for more:

        - ``train()`` and `grow` raise: with the statistics folded away there is no BatchNorm left to train, and
          a grown model would inherit convolutions that no longer match its new blocks' normalisation.
        - ``save_pretrained`` raises. Fused weights lack the BatchNorm tensors, so the folder would not load as a
          `PGATModel`; writing identity BatchNorms instead would load but would silently lose the running
          statistics that fine-tuning needs. Folding takes milliseconds at load time (``PGATPipeline.from_pretrained``
          does it by default), so repositories keep the one trainable form. Load with ``fuse=False`` to save.
        """
        for name, value in (("channels_last", channels_last), ("compile", compile)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False, got {value!r}")
        if not self._fused:
            self.eval()
            for block in [*self.encoder.values(), *self.decoder.values()]:
                block.fuse()
            for p in self.parameters():
                p.requires_grad_(False)
            self._fused = True
        if channels_last != self._channels_last:
            self.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            self._channels_last = channels_last
        if next(self.parameters()).device.type == "cpu":
            reuse_freed_memory()  # process-wide; PGAT_REUSE_CPU_MEMORY=0 turns it off
        if compile and "encode" not in self.__dict__:
            # instance attributes shadow the methods: forward() and the pipelines call them by name
            self.encode = torch.compile(self.encode)
            self.decode = torch.compile(self.decode)
        return self

    def _refuse_if_fused(self, action: str) -> None:
        if self._fused:
            raise RuntimeError(
                f"this PGATModel is fused for inference (its BatchNorms are folded into the convolutions by fuse()), "
                f"so it cannot {action}; load the weights unfused for that (PGATModel.from_pretrained, or "
                f"PGATPipeline.from_pretrained(..., fuse=False))"
            )

    def train(self, mode: bool = True) -> "PGATModel":
        if mode:
            self._refuse_if_fused("train")
        return super().train(mode)

    def save_pretrained(self, *args, **kwargs):
        self._refuse_if_fused("be saved")
        return super().save_pretrained(*args, **kwargs)

    def grow(self) -> "PGATModel":
        """The model at the next resolution (§3.1): one new outermost encoder block and decoder block,
        new ``from_rgb`` / ``to_rgb``; every older parameter and buffer copied bit-identically.

        There is no fade-in: the new layers start from He init and everything stays trainable. The
        new model is on this model's device and dtype and in its train/eval mode; ``self`` is unchanged.
        """
        self._refuse_if_fused("grow")
        r = self.config.resolution
        if r >= RESOLUTIONS[-1]:
            raise ValueError(f"cannot grow past {RESOLUTIONS[-1]}: this model is already at resolution {r}")
        param = next(self.parameters())
        grown = PGATModel.from_config({**self.config, "resolution": 2 * r}).to(param.device)
        if param.dtype != torch.float32:
            grown = grown.to(param.dtype)
        old = {k: v for k, v in self.state_dict().items() if not k.startswith(("from_rgb.", "to_rgb."))}
        missing, unexpected = grown.load_state_dict(old, strict=False)
        assert not unexpected, unexpected  # every old block exists, under the same name, in the grown model
        grown.train(self.training)
        return grown


def _he_init(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
