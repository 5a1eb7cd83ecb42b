"""The ``ddpm`` generator: a small class-conditional diffusion model trained on the study's own images.

Training (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"): for an image x₀ in [-1, 1],
a class y and a step t ~ U{0..T-1}, the noised image is x_t = √ᾱ_t·x₀ + √(1-ᾱ_t)·ε with ε ~ N(0, I).
ᾱ follows the cosine schedule (Nichol & Dhariwal 2021, ``squaredcos_cap_v2``), which wastes fewer
steps on pure noise at 32 px than the linear one. The UNet predicts v = √ᾱ_t·ε - √(1-ᾱ_t)·x₀
(Salimans & Ho 2022), trained with ‖v - v_θ(x_t, t, y)‖²: then x̂₀ = √ᾱ_t·x_t - √(1-ᾱ_t)·v_θ stays
well-conditioned at t = T-1, where ᾱ ≈ 1e-9 and the ε-form x̂₀ = (x_t - √(1-ᾱ)·ε_θ)/√ᾱ amplifies
float rounding 30,000-fold. The class is replaced by a null class with probability ``label_drop``, so
one network learns both p(x|y) and p(x) (classifier-free guidance, Ho & Salimans 2022). The
weights sampled from are an exponential moving average of the trained ones, with the warm-up
decay min(decay, (1+n)/(10+n)) so that a short run is not dominated by its random start.

Sampling: DDIM (Song et al. 2021, η = 0) over ``sample_steps`` of the T training steps, evenly
spaced down from t = T-1 ("trailing"), with the guided estimate v = v_∅ + w·(v_y - v_∅). Each
image starts from noise drawn from its own seed, so an image depends on its seed, not on the batch
it was generated in.

Cost: the UNet sees the image folded into ``patch``×``patch`` pixel blocks (space-to-depth, as the
patching of Hoogeboom et al. 2023, "simple diffusion"): a 32-px grey image enters as 4 channels at
16 px, a quarter of the positions for every convolution and so about a quarter of the work per
step; the noise and the DDIM update stay in pixel space, where folding is only a reordering of
the same numbers.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dapt.data.imageset import ImageSet
from dapt.training.device import Placement, device_of, to_device
from dapt.core.files import atomic_write_json, read_json
from dapt.core.progress import progress

EMA_DECAY = 0.999
LOSS_EVERY = 10  # training steps averaged into one point of the recorded loss curve


@dataclass(frozen=True)
class DdpmSettings:
    """What determines the trained model: a checkpoint made with equal settings is reused."""

    dataset: str
    train_subset: int | None
    image_size: int
    seed: int
    channels: int  # 1 for a grey dataset, else 3
    patch: int  # pixel blocks folded into channels before the UNet
    base_channels: int
    train_steps: int
    batch_size: int
    lr: float
    timesteps: int
    label_drop: float
    prediction: str = "v_prediction"  # recorded, so a model trained to another target is never reused
    amp: str = "off"  # mixed precision of training: bf16/fp16 weights differ from float32 ones
    images: str = ""  # a user's folder's fingerprint (ImageSet.fingerprint): an edited folder trains a new model

    def as_dict(self) -> dict:
        # amp off and images "" are left out, so models trained before they existed (all float32, on official
        # datasets) are still reused
        return {k: v for k, v in self.__dict__.items() if not (k == "amp" and v == "off" or k == "images" and not v)}


def settings_of(cfg, ds: ImageSet) -> DdpmSettings:
    """The run's ddpm settings; a grey dataset (its three channels equal) is modelled in one channel."""
    grey = bool((ds.train_x[:, 0] == ds.train_x[:, 1]).all() and (ds.train_x[:, 0] == ds.train_x[:, 2]).all())
    return DdpmSettings(cfg.dataset, cfg.train_subset, cfg.image_size, cfg.seed, 1 if grey else 3, cfg.ddpm_patch,
                        cfg.ddpm_channels, cfg.ddpm_steps, cfg.ddpm_batch_size, cfg.ddpm_lr, cfg.ddpm_timesteps,
                        cfg.ddpm_label_drop, amp=cfg.amp, images=ds.fingerprint)


def build_unet(s: DdpmSettings, num_classes: int):
    """A three-level UNet (s, 2s, 2s channels at full, half and quarter size), self-attention only at
    the quarter size where it is cheap; class embedding index ``num_classes`` is the null class."""
    from diffusers import UNet2DModel

    b, folded = s.base_channels, s.channels * s.patch ** 2
    return UNet2DModel(
        sample_size=s.image_size // s.patch, in_channels=folded, out_channels=folded, layers_per_block=1,
        block_out_channels=(b, 2 * b, 2 * b), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=min(2 * b, 32),
        norm_num_groups=min(8, b), num_class_embeds=num_classes + 1)


def train_scheduler(s: DdpmSettings):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=s.timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type=s.prediction)


def predict_v(unet, x: torch.Tensor, t, labels: torch.Tensor, patch: int) -> torch.Tensor:
    """v_θ(x, t, y) in pixel space for images ``x`` [N, C, S, S], through the folded UNet."""
    folded = F.pixel_unshuffle(x, patch) if patch > 1 else x
    v = unet(folded, t, class_labels=labels).sample
    return F.pixel_shuffle(v, patch) if patch > 1 else v


def to_model_range(x_uint8: torch.Tensor, channels: int) -> torch.Tensor:
    return x_uint8[:, :channels].float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


@dataclass
class Ddpm:
    unet: object  # the EMA UNet2DModel, in eval mode
    settings: DdpmSettings
    losses: list[float]  # mean training loss (v-prediction MSE) per LOSS_EVERY steps
    reused: bool
    train_time_s: float


def load_or_train(cfg, ds: ImageSet, folder: Path, tracker=None, place: Placement | None = None) -> Ddpm:
    """The model in ``folder`` (``ddpm/``) if it was trained with these settings, else a new one trained
    now on ``place`` (default: the CPU, float32); returned on ``place.device``, for sampling there."""
    from diffusers import UNet2DModel

    place = place or Placement()
    settings = settings_of(cfg, ds)
    recorded = read_json(folder / "training.json")
    if recorded and recorded.get("settings") == settings.as_dict() and (folder / "unet" / "config.json").is_file():
        unet = UNet2DModel.from_pretrained(folder / "unet", low_cpu_mem_usage=False).eval().to(place.device)
        return Ddpm(unet, settings, list(recorded["losses"]), True, float(recorded["train_time_s"]))
    started = time.time()
    unet, losses = _train(settings, ds, tracker, place)
    elapsed = round(time.time() - started, 2)
    # weights first, then the record that vouches for them: a crash in between means a retrain, not a mismatch
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    atomic_write_json(folder / "training.json", {"settings": settings.as_dict(), "losses": losses,
                                                 "train_time_s": elapsed})
    return Ddpm(unet.eval(), settings, losses, False, elapsed)


def _train(s: DdpmSettings, ds: ImageSet, tracker, place: Placement) -> tuple[object, list[float]]:
    torch.manual_seed(s.seed)
    unet = build_unet(s, ds.num_classes).to(place.device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = train_scheduler(s)
    alphas = place.to_device(scheduler.alphas_cumprod)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=s.lr, weight_decay=0.0)
    warmup = max(1, s.train_steps // 20)
    # linear warm-up over the first 5% of the steps, then constant
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda n: min(1.0, (n + 1) / warmup))
    x_all = to_model_range(ds.train_x, s.channels)
    y_all = ds.train_y
    generator = torch.Generator().manual_seed(s.seed)
    losses, window = [], []
    unet.train()
    bar = progress(range(s.train_steps), desc="ddpm training", unit="step")
    for n in bar:
        index = torch.randint(len(y_all), (s.batch_size,), generator=generator)
        x0, y = x_all[index], y_all[index].clone()
        y[torch.rand(len(y), generator=generator) < s.label_drop] = ds.num_classes  # the null class
        t = torch.randint(s.timesteps, (len(y),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)  # drawn on the CPU: the same on any device
        x0, y, t, noise = (place.to_device(v) for v in (x0, y, t, noise))
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with place.autocast():
            v = predict_v(unet, xt, t, y, s.patch).float()
        loss = F.mse_loss(v, a.sqrt() * noise - (1 - a).sqrt() * x0)
        optimizer.zero_grad(set_to_none=True)
        place.backward(loss)
        place.step(optimizer, clip=1.0)
        schedule.step()
        decay = min(EMA_DECAY, (1 + n) / (10 + n))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        window.append(loss.item())
        if len(window) == LOSS_EVERY or n == s.train_steps - 1:
            losses.append(sum(window) / len(window))
            window = []
            if tracker is not None:
                tracker.log({"ddpm_loss": losses[-1]}, step=n + 1)
            bar.set_postfix_str(f"loss {losses[-1]:.4f}", refresh=False)
    bar.close()
    return ema.eval(), losses


@torch.inference_mode()
def sample(model: Ddpm, labels: list[int], seeds: list[int], *, steps: int, guidance: float,
           num_classes: int) -> torch.Tensor:
    """uint8 images [N, C, S, S] of classes ``labels``, image k drawn from noise seeded with ``seeds[k]``."""
    from diffusers import DDIMScheduler

    s = model.settings
    device = device_of(model.unet)
    # "trailing" spacing starts at t = T-1, where the pure noise x_T actually lives; diffusers' default
    # "leading" starts at T - T/steps (t=901 of 1000 for 10 steps) and hands the UNet noise it reads as
    # partly denoised (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed").
    ddim = DDIMScheduler.from_config(train_scheduler(s).config, steps_offset=1, timestep_spacing="trailing")
    ddim.set_timesteps(steps)
    shape = (s.channels, s.image_size, s.image_size)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
    x, y = to_device(x, device), to_device(torch.tensor(labels), device)
    null = torch.full_like(y, num_classes)
    for t in ddim.timesteps:
        if guidance == 1.0:
            v = predict_v(model.unet, x, t, y, s.patch)
        else:
            v_y, v_null = predict_v(model.unet, torch.cat([x, x]), t, torch.cat([y, null]), s.patch).chunk(2)
            v = v_null + guidance * (v_y - v_null)
        x = ddim.step(v, t, x, eta=0.0).prev_sample
    return to_uint8(x).cpu()
