"""Which device runs a network: "auto", "cuda:1", "mps" or "cpu", resolved in one place.

Used by depth from focus, autofocus, training, batch and the docks' device menus, so they
all agree on what "auto" means (CUDA, then Apple Metal, then the CPU) and on the message
when a requested device is missing. torch is imported on first use, not at import.
"""

from __future__ import annotations

from typing import Any

from napari_gplws.errors import ModelError


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"``/``"cuda"``/``"cuda:1"``/``"mps"``/``"cpu"`` into an available device.

    Raises
    ------
    ModelError
        The requested device is not available on this machine.
    """
    import torch

    d = (device or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if d == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if has_mps else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"Device '{device}' was requested but this PyTorch ({torch.__version__}) sees no CUDA GPU. "
                "Use device='auto' or 'cpu', or install a CUDA build of PyTorch."
            )
        if ":" in d and int(d.split(":")[1]) >= torch.cuda.device_count():
            raise ModelError(f"Device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s) found.")
        return d
    if d == "mps":
        if not has_mps:
            raise ModelError("Device 'mps' was requested but Apple Metal is not available; use 'auto' or 'cpu'.")
        return d
    if d == "cpu":
        return d
    raise ModelError(f"Unknown device '{device}'; choose auto, cpu, cuda, cuda:N or mps.")


def available_devices() -> list[str]:
    """Devices PyTorch can use here: ``auto``, ``cpu``, each ``cuda:N`` and ``mps`` when present."""
    devices = ["auto", "cpu"]
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return devices
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def torch_device(device: str = "auto") -> Any:
    """:func:`resolve_device` as a ``torch.device``."""
    import torch

    return torch.device(resolve_device(device))


def memory_budget_bytes(device: str) -> int:
    """Memory a network may use for activations: half the free GPU memory, or a quarter of
    the available RAM capped at 1.5 GiB on the CPU."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * 0.5)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in fh if ":" in ln}
        avail = info.get("MemAvailable", 4 << 30)
    except OSError:  # pragma: no cover - not Linux
        avail = 4 << 30
    return int(min(avail * 0.25, 1.5 * (1 << 30)))
