"""Choosing devices and precision (torch).

Automatic: CUDA, then Apple MPS, then CPU; bf16 on GPUs that support it, fp16 on other GPUs,
fp32 on CPU. ``device="cuda"`` on a machine with several GPUs means one model replica per GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from es_semantic.errors import ConfigError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_devices(device: str | None = None, devices: Sequence[str] | None = None) -> list[torch.device]:
    """The devices to run replicas on.

    ``devices`` (explicit list) wins; then ``device``: ``"cuda"`` means every visible GPU,
    ``"cuda:1"`` that one GPU; ``None`` picks the best available (all GPUs if there are any).
    """
    if devices:
        out = [torch.device(d) for d in devices]
    elif device is None or device == "cuda":
        if torch.cuda.is_available():
            out = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        elif device == "cuda":
            raise ConfigError("device='cuda' was asked for but torch sees no CUDA GPU; use device='cpu'.")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            out = [torch.device("mps")]
        else:
            out = [torch.device("cpu")]
    else:
        try:
            out = [torch.device(device)]
        except RuntimeError as exc:
            raise ConfigError(f"Unknown device {device!r}: {exc}") from None
    for d in out:
        if d.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {d} was asked for but torch sees no CUDA GPU; use device='cpu'.")
    return out


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The compute dtype: explicit, else bf16/fp16 on GPU and fp32 on CPU."""
    if dtype is not None:
        try:
            return _DTYPES[str(dtype).lower().removeprefix("torch.")]
        except KeyError:
            raise ConfigError(f"Unknown dtype {dtype!r}; use one of float32, bfloat16, float16.") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def default_batch_tokens(device: torch.device, dtype: torch.dtype, hidden_size: int | None) -> int:
    """A padded-token budget per forward pass that fits the device.

    GPU: a share of free memory divided by a rough per-token activation size (one layer's
    activations live at a time under inference_mode); capped, since past ~64k tokens a batch is
    already compute-bound. CPU: small batches keep caches warm and tail latency low.
    """
    if device.type != "cuda":
        return 8192
    free, _total = torch.cuda.mem_get_info(device)
    bytes_per = torch.finfo(dtype).bits // 8
    per_token = max(hidden_size or 1024, 256) * 24 * bytes_per  # qkv, mlp (x3 widths), residuals
    budget = int(free * 0.4 / per_token)
    return int(min(max(budget, 2048), 131072))


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA or MPS)."""
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
