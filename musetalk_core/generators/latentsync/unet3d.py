"""LatentSync's UNet3DConditionModel: the denoiser of the LatentSync generator (versions 1.5 and 1.6).

Input: (batch, 13, frames, h, w) = noisy latents (4) ++ mouth mask (1) ++ masked-face latents (4) ++ reference-face
latents (4), a diffusion timestep, and the audio windows as cross-attention context, (batch*frames, 50, 384) or
(batch, frames, 50, 384). Output: the predicted noise, (batch, 4, frames, h, w).

Module names follow upstream (bytedance/LatentSync latentsync/models/unet.py, unet_blocks.py, attention.py,
motion_module.py at config.REFERENCE_COMMIT) so ``latentsync_unet.pt`` loads with strict key matching.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNet3DConfig
from .layers import (Downsample3D, FrameConv, ResnetBlock3D, TimestepEmbedding, Transformer3DModel, Upsample3D,
                     VanillaTemporalModule, timestep_embedding)


class _Block(nn.Module):
    """resnet -> (spatial transformer) -> (motion module), repeated; shared by the down, mid and up blocks."""

    def _layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.resnets[i](x, temb)
        if self.attentions is not None:
            x = self.attentions[i](x, context)
        if self.motion_modules is not None and self.motion_modules[i] is not None:
            x = self.motion_modules[i](x)
        return x


def _modules(n: int, make, enabled: bool) -> Optional[nn.ModuleList]:
    return nn.ModuleList([make() for _ in range(n)]) if enabled else None


class DownBlock3D(_Block):
    def __init__(self, cfg: UNet3DConfig, in_ch: int, out_ch: int, temb: int, cross: bool, motion: bool,
                 downsample: bool):
        super().__init__()
        n, heads = cfg.layers_per_block, cfg.attention_head_dim
        self.resnets = nn.ModuleList([ResnetBlock3D(in_ch if i == 0 else out_ch, out_ch, temb, cfg.norm_num_groups,
                                                    cfg.norm_eps) for i in range(n)])
        self.attentions = _modules(n, lambda: Transformer3DModel(heads, out_ch, cfg.cross_attention_dim,
                                                                 cfg.norm_num_groups, cfg.add_audio_layer), cross)
        self.motion_modules = _modules(n, lambda: VanillaTemporalModule(out_ch, cfg.motion_module), motion)
        self.downsamplers = (nn.ModuleList([Downsample3D(out_ch, cfg.downsample_padding)]) if downsample else None)

    def forward(self, x, temb, context):  # noqa: D102
        skips = []
        for i in range(len(self.resnets)):
            x = self._layer(i, x, temb, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock3D(_Block):
    """resnet, then (transformer -> motion module -> resnet) once (upstream: UNetMidBlock3DCrossAttn)."""

    def __init__(self, cfg: UNet3DConfig, ch: int, temb: int, motion: bool):
        super().__init__()
        scale = cfg.mid_block_scale_factor
        self.resnets = nn.ModuleList([ResnetBlock3D(ch, ch, temb, cfg.norm_num_groups, cfg.norm_eps, scale)
                                      for _ in range(2)])
        self.attentions = nn.ModuleList([Transformer3DModel(cfg.attention_head_dim, ch, cfg.cross_attention_dim,
                                                            cfg.norm_num_groups, cfg.add_audio_layer)])
        self.motion_modules = _modules(1, lambda: VanillaTemporalModule(ch, cfg.motion_module), motion)

    def forward(self, x, temb, context):  # noqa: D102
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        if self.motion_modules is not None:
            x = self.motion_modules[0](x)
        return self.resnets[1](x, temb)


class UpBlock3D(_Block):
    def __init__(self, cfg: UNet3DConfig, in_ch: int, out_ch: int, prev_ch: int, temb: int, cross: bool,
                 motion: bool, upsample: bool):
        super().__init__()
        n, heads = cfg.layers_per_block + 1, cfg.attention_head_dim
        self.resnets = nn.ModuleList([
            ResnetBlock3D((prev_ch if i == 0 else out_ch) + (in_ch if i == n - 1 else out_ch), out_ch, temb,
                          cfg.norm_num_groups, cfg.norm_eps) for i in range(n)])
        self.attentions = _modules(n, lambda: Transformer3DModel(heads, out_ch, cfg.cross_attention_dim,
                                                                 cfg.norm_num_groups, cfg.add_audio_layer), cross)
        self.motion_modules = _modules(n, lambda: VanillaTemporalModule(out_ch, cfg.motion_module), motion)
        self.upsamplers = nn.ModuleList([Upsample3D(out_ch)]) if upsample else None

    def forward(self, x, temb, context, skips, upsample_size=None):  # noqa: D102
        for i in range(len(self.resnets)):
            x = torch.cat([x, skips.pop()], dim=1)
            x = self._layer(i, x, temb, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, upsample_size)
        return x


class UNet3DConditionModel(nn.Module):
    def __init__(self, config: UNet3DConfig):
        super().__init__()
        self.config = config
        ch = config.block_out_channels
        temb = ch[0] * 4
        mm_res = config.motion_module_resolutions
        use_mm = config.use_motion_module
        self.conv_in = FrameConv(config.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)

        self.down_blocks = nn.ModuleList()
        out_ch = ch[0]
        for i, kind in enumerate(config.down_block_types):
            in_ch, out_ch = out_ch, ch[i]
            motion = use_mm and (2 ** i in mm_res) and not config.motion_module_decoder_only
            self.down_blocks.append(DownBlock3D(config, in_ch, out_ch, temb, kind == "CrossAttnDownBlock3D", motion,
                                                downsample=i < len(ch) - 1))
        self.mid_block = MidBlock3D(config, ch[-1], temb, use_mm and config.motion_module_mid_block)

        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        out_ch = rev[0]
        for i, kind in enumerate(config.up_block_types):
            prev_ch, out_ch = out_ch, rev[i]
            in_ch = rev[min(i + 1, len(ch) - 1)]
            # Upstream computes the resolution as 2 ** (3 - i), i.e. for exactly four levels.
            motion = use_mm and (2 ** (3 - i) in mm_res)
            self.up_blocks.append(UpBlock3D(config, in_ch, out_ch, prev_ch, temb, kind == "CrossAttnUpBlock3D",
                                            motion, upsample=i < len(ch) - 1))
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, ch[0], eps=config.norm_eps)
        self.conv_out = FrameConv(ch[0], config.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, sample: torch.Tensor, timestep: Union[torch.Tensor, float, int],
                encoder_hidden_states: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Predicted noise for ``sample`` (b, 13, f, h, w) at ``timestep`` given the audio context."""
        if sample.dim() != 5 or sample.shape[1] != self.config.in_channels:
            raise ValueError(f"UNet3D input must be (batch, {self.config.in_channels}, frames, h, w), "
                             f"got {tuple(sample.shape)}")
        context = encoder_hidden_states
        if context is not None and context.dim() == 4:  # (b, f, s, d) -> (b*f, s, d), as upstream
            context = context.reshape(-1, *context.shape[2:])
        t = torch.as_tensor(timestep, device=sample.device)
        if t.dim() == 0:
            t = t[None]
        t = t.expand(sample.shape[0])
        emb = self.time_embedding(timestep_embedding(t, self.config.block_out_channels[0], self.config.flip_sin_to_cos,
                                                     self.config.freq_shift).to(self.dtype))

        factor = 2 ** (len(self.up_blocks) - 1)
        forward_size = any(s % factor != 0 for s in sample.shape[-2:])

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, res = block(x, emb, context)
            skips.extend(res)
        x = self.mid_block(x, emb, context)
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            own, skips = skips[-n:], skips[:-n]
            size = skips[-1].shape[2:] if (forward_size and i < len(self.up_blocks) - 1) else None
            x = block(x, emb, context, own, size)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
