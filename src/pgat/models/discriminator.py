"""LocalDiscriminator: the local discriminator of the final level (§3.2, local descriptors).

It scores one descriptor crop pair at a time: a 6-channel input, the reference crop ``X_d`` stacked
on the target crop ``X'_d`` (real) or the generated crop ``X̂_d`` (fake). Strided 4x4 convolutions halve
the crop until it is 2x2 with one channel; the four values are averaged into one score. The same network
scores every descriptor, so a batch of ``B`` images with ``N`` descriptors is one batch of ``B * N`` crops.

Layout for a crop of side ``s`` (a power of two; ``n = log2(s) - 1`` layers)::

    (6, s, s)  conv 4x4 /2 -> base_channels       LeakyReLU(0.2)
               conv 4x4 /2 -> 2 * base_channels   LeakyReLU(0.2)   (capped at max_channels)
               ...
               conv 4x4 /2 -> 1                   -> (1, 2, 2) -> mean -> one score
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput


@dataclass
class LocalDiscriminatorOutput(BaseOutput):
    """Output of `LocalDiscriminator`.

    Args:
        scores (`torch.Tensor`): one raw (unbounded) score per crop pair, shape ``(M,)`` for ``(M, 6, s, s)``
            inputs or ``(B, N)`` for ``(B, N, 6, s, s)`` inputs.
    """

    scores: torch.Tensor


class LocalDiscriminator(ModelMixin, ConfigMixin):
    r"""One discriminator shared by every local descriptor.

    Args:
        crop_size (`int`, *optional*, defaults to 128): side of the crops, a power of two >= 4 (R/8: 128 at 1024²).
        in_channels (`int`, *optional*, defaults to 6): channels of a crop pair (reference RGB + target/generated RGB).
        base_channels (`int`, *optional*, defaults to 64): width of the first convolution; doubled per layer.
        max_channels (`int`, *optional*, defaults to 512): cap on the width.
        negative_slope (`float`, *optional*, defaults to 0.2): LeakyReLU slope.
    """

    @register_to_config
    def __init__(
        self,
        crop_size: int = 128,
        in_channels: int = 6,
        base_channels: int = 64,
        max_channels: int = 512,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 4 or crop_size & (crop_size - 1):
            raise ValueError(f"`crop_size` must be a power of two >= 4 (the descriptor crop side R/8), got {crop_size!r}")
        if in_channels < 1 or base_channels < 1 or max_channels < 1:
            raise ValueError(
                "`in_channels`, `base_channels` and `max_channels` must be positive, "
                f"got {in_channels}, {base_channels} and {max_channels}"
            )
        num_layers = crop_size.bit_length() - 2  # s -> 2 in halvings
        layers, c_in = [], in_channels
        for i in range(num_layers - 1):
            c_out = min(base_channels * 2**i, max_channels)
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(negative_slope)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, stride=2, padding=1))  # down to 2x2x1
        self.layers = nn.Sequential(*layers)

    def forward(self, crops: torch.Tensor, return_dict: bool = True) -> Union[LocalDiscriminatorOutput, Tuple[torch.Tensor]]:
        r"""
        Args:
            crops (`torch.Tensor`): crop pairs ``(M, 6, s, s)`` or ``(B, N, 6, s, s)``, images in [-1, 1].
            return_dict (`bool`, *optional*, defaults to `True`): return a `LocalDiscriminatorOutput` instead of a tuple.
        """
        c = self.config
        want = (c.in_channels, c.crop_size, c.crop_size)
        if not isinstance(crops, torch.Tensor) or crops.ndim not in (4, 5) or tuple(crops.shape[-3:]) != want:
            got = tuple(crops.shape) if isinstance(crops, torch.Tensor) else type(crops).__name__
            raise ValueError(f"`crops` must be a tensor of shape (M, {', '.join(map(str, want))}) or (B, N, {', '.join(map(str, want))}), got {got}")
        lead = crops.shape[:-3]
        scores = self.layers(crops.reshape(-1, *want)).mean(dim=(1, 2, 3)).reshape(lead)
        if not return_dict:
            return (scores,)
        return LocalDiscriminatorOutput(scores=scores)
