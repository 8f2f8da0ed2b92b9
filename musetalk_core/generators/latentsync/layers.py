"""The layers of LatentSync's UNet3D, written to load ``latentsync_unet.pt`` unchanged (same module names).

Video tensors are (batch, channels, frames, height, width). Convolutions, the spatial transformers and their norms
work frame by frame; two things couple the frames: the temporal (motion) modules, and the GroupNorms of the resnets
and of the UNet's output, which upstream applies to the 5-D tensor as a whole (statistics over all frames of the
window). Both are reproduced as upstream does them, because the weights were trained that way.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...models.positional_encoding import sinusoid_table as audio_sinusoid_table


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) -> (b*f, c, h, w), frame-major inside each batch item."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def batch_to_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    bf, c, h, w = x.shape
    return x.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)


class FrameConv(nn.Conv2d):
    """A 2-D convolution applied to every frame (upstream: InflatedConv3d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return batch_to_frames(super().forward(frames_to_batch(x)), x.shape[2])


def timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps (diffusers' get_timestep_embedding, max period 10000), float32."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / (half - freq_shift)
    angles = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.linear_2(F.silu(self.linear_1(x)))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, 4x wide; keys ``net.0.proj`` / ``net.2`` as diffusers' FeedForward."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for layer in self.net:
            x = layer(x)
        return x


class Attention(nn.Module):
    """Multi-head attention; q/k/v without bias, output projection with bias (key ``to_out.0``)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: Optional[int] = None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:  # noqa: D102
        context = x if context is None else context
        out = F.scaled_dot_product_attention(self._split(self.to_q(x)), self._split(self.to_k(context)),
                                             self._split(self.to_v(context)))
        b, h, n, d = out.shape
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, h * d))


class ResnetBlock3D(nn.Module):
    """GroupNorm-SiLU-conv twice with the time embedding added in between (upstream's "default" time norm)."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float,
                 output_scale_factor: float = 1.0):
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = FrameConv(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = FrameConv(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = FrameConv(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # GroupNorm on the 5-D tensor: statistics span all frames of the window, as upstream.
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class Downsample3D(nn.Module):
    def __init__(self, channels: int, padding: int):
        super().__init__()
        self.conv = FrameConv(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(x)


class Upsample3D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:  # noqa: D102
        dtype = x.dtype
        if dtype == torch.bfloat16:  # nearest upsampling has no bf16 kernel everywhere; upstream casts the same way
            x = x.float()
        if output_size is None:
            x = F.interpolate(x, scale_factor=[1.0, 2.0, 2.0], mode="nearest")
        else:
            x = F.interpolate(x, size=output_size, mode="nearest")
        return self.conv(x.to(dtype))


class SpatialTransformerBlock(nn.Module):
    """Self-attention over the pixels of a frame, cross-attention to the frame's audio window, feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, audio: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        if audio:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, dim_head, context_dim)
        else:
            self.attn2 = None
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:  # noqa: D102
        x = self.attn1(self.norm1(x)) + x
        if self.attn2 is not None and context is not None:
            x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer3DModel(nn.Module):
    """Per-frame spatial transformer with 1x1-conv projections (upstream's use_linear_projection=False)."""

    def __init__(self, heads: int, channels: int, context_dim: int, groups: int, audio: bool):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [SpatialTransformerBlock(channels, heads, channels // heads, context_dim, audio)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:  # noqa: D102
        frames = x.shape[2]
        x = frames_to_batch(x)
        bf, c, h, w = x.shape
        hidden = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        for block in self.transformer_blocks:
            hidden = block(hidden, context)
        hidden = self.proj_out(hidden.reshape(bf, h, w, c).permute(0, 3, 1, 2))
        return batch_to_frames(hidden + x, frames)


def sinusoid_table(dim: int, max_len: int) -> torch.Tensor:
    """(1, max_len, dim) positional table of the temporal attention: the same sinusoids as MuseTalk's audio PE."""
    return audio_sinusoid_table(max_len, dim).unsqueeze(0)


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int):
        super().__init__()
        # A persistent buffer: upstream saves it inside latentsync_unet.pt, so it is loaded from the file.
        self.register_buffer("pe", sinusoid_table(dim, max_len))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.pe[:, : x.shape[1]]


class TemporalAttention(Attention):
    """Self-attention along the frames of each pixel (upstream: VersatileAttention, mode Temporal_Self)."""

    def __init__(self, dim: int, heads: int, dim_head: int, position_encoding: bool, max_len: int):
        super().__init__(dim, heads, dim_head)
        self.pos_encoder = PositionalEncoding(dim, max_len) if position_encoding else None

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:  # noqa: D102
        bf, s, c = x.shape
        x = x.reshape(bf // frames, frames, s, c).transpose(1, 2).reshape(-1, frames, c)  # (b s) f c
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        x = super().forward(x)
        return x.reshape(bf // frames, s, frames, c).transpose(1, 2).reshape(bf, s, c)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, n_attention: int, position_encoding: bool, max_len: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            [TemporalAttention(dim, heads, dim_head, position_encoding, max_len) for _ in range(n_attention)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(n_attention)])
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:  # noqa: D102
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer3DModel(nn.Module):
    def __init__(self, channels: int, mm):
        super().__init__()
        heads = mm.num_attention_heads
        dim_head = channels // heads // mm.temporal_attention_dim_div
        inner = heads * dim_head
        for kind in mm.attention_block_types:
            if kind != "Temporal_Self":
                raise ValueError(f"motion module attention '{kind}' is not used by LatentSync")
        self.norm = nn.GroupNorm(mm.norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList([
            TemporalTransformerBlock(inner, heads, dim_head, len(mm.attention_block_types),
                                     mm.temporal_position_encoding, mm.temporal_position_encoding_max_len)
            for _ in range(mm.num_transformer_block)])
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        frames = x.shape[2]
        x = frames_to_batch(x)
        bf, c, h, w = x.shape
        hidden = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c))
        for block in self.transformer_blocks:
            hidden = block(hidden, frames)
        hidden = self.proj_out(hidden).reshape(bf, h, w, c).permute(0, 3, 1, 2)
        return batch_to_frames(hidden + x, frames)


class VanillaTemporalModule(nn.Module):
    """Motion module: a temporal transformer with a residual (upstream's VanillaTemporalModule)."""

    def __init__(self, channels: int, mm):
        super().__init__()
        self.temporal_transformer = TemporalTransformer3DModel(channels, mm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.temporal_transformer(x)
