"""LatentSync's denoising: DDIM (or, opted in, DPM-Solver++) with classifier-free guidance over windows of frames
(lipsync_pipeline.py's loop).

Per window of ``window`` frames (16 upstream; the last window may be shorter) and per DDIM step the UNet sees
``cat(noisy latents, mask, masked-face latents, reference latents)`` twice: with all-zero audio (unconditional) and
with the window's audio; the guided noise is ``uncond + g * (audio - uncond)``. With ``guidance_scale <= 1`` the
unconditional pass is skipped, as upstream. The initial noise is one (4, h, w) draw repeated over every frame.

Deviation, on purpose: the noise is drawn on the CPU in float32 from ``torch.Generator().manual_seed(seed)`` and then
moved, so a seed gives the same result on every device (upstream draws on the GPU's generator, in the model dtype).
On the CPU in fp32 the two are the same numbers.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ...errors import InputError
from ...hooks import NO_HOOKS, RunHooks
from ...options import PARAMS
from .config import SCHEDULER_CONFIG
from .pixels import LatentSyncNoise

MAX_WINDOW = 24  # temporal position tables hold 24 frames


SCHEDULERS = PARAMS["scheduler"].choices  # declared once, with the node input and the command line flag
# the noise schedule both samplers integrate: configs/scheduler_config.json's betas (DDIM's own keys left out)
_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas")


def make_scheduler(kind: str = "ddim", steps: Optional[int] = None, device=None):
    """A new scheduler, its timesteps set when ``steps`` is given. ddim: diffusers' DDIMScheduler with LatentSync's
    configs/scheduler_config.json (upstream). dpm_solver++: diffusers' DPMSolverMultistepScheduler (2nd order,
    data prediction, its default timestep spacing) on the same betas, as LatentSync #290 swaps it in.

    One per window: DPM-Solver++ keeps the window's earlier model outputs and its step index (reused, the second
    window fails with #290's index error or starts from the first window's history); DDIM keeps nothing, so a new
    one changes nothing there."""
    if kind == "ddim":
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(dict(SCHEDULER_CONFIG))
    elif kind == "dpm_solver++":
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler.from_config(
            {k: SCHEDULER_CONFIG[k] for k in _SCHEDULE_KEYS}, algorithm_type="dpmsolver++", solver_order=2,
            prediction_type="epsilon")
    else:
        raise InputError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {kind!r}.")
    if steps is not None:
        scheduler.set_timesteps(int(steps), device=device)
    return scheduler


def _step_options(scheduler) -> dict:
    """DDIM's step takes eta (0: deterministic, as upstream); DPM-Solver++'s has none."""
    import inspect

    return {"eta": 0.0} if "eta" in inspect.signature(scheduler.step).parameters else {}


def initial_latents(num_frames: int, height: int, width: int, seed: int, device=None,
                    dtype: torch.dtype = torch.float32, init_noise_sigma: float = 1.0) -> torch.Tensor:
    """(1, 4, num_frames, height, width): one seeded (4, h, w) noise image repeated over all frames."""
    noise = LatentSyncNoise(seed).initial(num_frames, height, width)
    return noise.to(device=device, dtype=dtype) * init_noise_sigma


def latent_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel mask (frames, 1, H, W) -> latent size by nearest neighbour (prepare_mask_latents), (1, 1, f, h, w)."""
    small = torch.nn.functional.interpolate(mask, size=(height, width))
    return small.permute(1, 0, 2, 3).unsqueeze(0)


StepCallback = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]


def denoise_window(unet, scheduler, latents: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor,
                   reference: torch.Tensor, audio: Optional[torch.Tensor], guidance_scale: float,
                   hooks: RunHooks = NO_HOOKS, on_step: Optional[StepCallback] = None, window_index: int = 0):
    """Run every timestep of ``scheduler`` (a new one per window: make_scheduler) on one window. Inputs are
    (1, c, f, h, w); audio is (f, 50, 384)."""
    guided = guidance_scale > 1.0
    cond = torch.cat([mask, masked, reference], dim=1)
    if audio is not None and guided:
        audio = torch.cat([torch.zeros_like(audio), audio])
    if guided:
        cond = torch.cat([cond, cond])
    options = _step_options(scheduler)
    for j, t in enumerate(scheduler.timesteps):
        x = torch.cat([latents, latents]) if guided else latents
        x = torch.cat([scheduler.scale_model_input(x, t), cond], dim=1)
        raw = unet(x, t, audio)
        noise = raw
        if guided:
            uncond, with_audio = raw.chunk(2)
            noise = uncond + guidance_scale * (with_audio - uncond)
        latents = scheduler.step(noise, t, latents, **options).prev_sample
        if on_step is not None:
            on_step(window_index, j, int(t), raw, latents)
        hooks.step(1)
    return latents


@torch.no_grad()
def sample(unet, mask: torch.Tensor, masked: torch.Tensor, reference: torch.Tensor, audio: torch.Tensor, *,
           steps: int = 20, guidance_scale: float = 1.5, seed: int = 1247, window: int = 16,
           latents: Optional[torch.Tensor] = None, hooks: RunHooks = NO_HOOKS,
           on_step: Optional[StepCallback] = None, scheduler: str = "ddim") -> torch.Tensor:
    """Denoised latents (1, 4, T, h, w) for T frames of conditioning.

    ``mask`` (1, 1, T, h, w), ``masked`` and ``reference`` (1, 4, T, h, w) are the scaled VAE latents of the masked
    and reference faces; ``audio`` is (T, 50, 384). ``hooks`` advances once per denoising step of every window
    (ceil(T / window) * steps units) and may interrupt between steps. ``latents`` replaces the seeded noise.
    """
    if not 1 <= window <= MAX_WINDOW:
        raise InputError(f"window length must be between 1 and {MAX_WINDOW} frames, got {window}.")
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}.")
    total = mask.shape[2]
    for name, tensor in (("masked", masked), ("reference", reference)):
        if tensor.shape[2] != total or tensor.shape[-2:] != mask.shape[-2:]:
            raise InputError(f"LatentSync sampler: '{name}' latents {tuple(tensor.shape)} do not match the mask "
                             f"latents {tuple(mask.shape)} (frames and size must agree).")
    if audio is not None and audio.shape[0] != total:
        raise InputError(f"LatentSync sampler: {audio.shape[0]} audio windows for {total} frames; "
                         "there must be one per frame.")
    dtype, device = unet.dtype, mask.device
    if latents is None:
        latents = initial_latents(total, mask.shape[-2], mask.shape[-1], seed, device, dtype,
                                  float(make_scheduler(scheduler).init_noise_sigma))
    out = []
    for w, start in enumerate(range(0, total, window)):
        part = slice(start, start + window)
        out.append(denoise_window(
            unet, make_scheduler(scheduler, steps, device), latents[:, :, part], mask[:, :, part].to(dtype),
            masked[:, :, part].to(dtype), reference[:, :, part].to(dtype),
            None if audio is None else audio[part].to(device, dtype), guidance_scale, hooks, on_step, w))
    return torch.cat(out, dim=2)
