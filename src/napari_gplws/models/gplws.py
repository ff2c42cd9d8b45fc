"""GPLWS-Net: a lightweight, re-parameterisable network for depth from focus.

The network reads a focus stack ``(B, C, N, H, W)`` (C = 1 or 3, any N ≥ 2, any H, W) and
returns, for every pixel, logits over the N frames. A softmax turns them into a probability
that each frame is the sharpest one; from it come the depth (the expected focus position, so
µm in gives µm out), a confidence and the all-in-focus image (see :func:`depth_from_logits`).

Architecture (our own implementation of the ideas described in the GPLWS-Net paper):

* A fixed focus prior (not learned): the log band-pass energy of every frame relative to
  its mean over the stack is added as a second input channel (:meth:`GPLWSNet.focus_energy`).
  It hands the network the classical focus curve, so the learned part only has to
  aggregate it over space and frames; this made training on a small CPU budget possible.
* A lossless s×s space-to-depth step (s = 4 by default) turns full-resolution frames into
  s² channels at 1/s resolution, so that no 3D convolution runs at full resolution (speed
  on CPU), and a sub-pixel (depth-to-space) head gives full-resolution logits back.
* A U-shaped backbone over four scales (1/s … 1/8s of the frame size); the stack axis N is
  never downsampled, so any number of frames works.
* **Group-parallel blocks**: a grouped 3×3×3 convolution (each channel group looks for local
  focus maxima across the stack) followed by a 1×1×1 convolution that merges the groups
  into a global decision. No channel shuffle.
* **Additive** skip connections between encoder and decoder at the same scale.
* **Structural re-parameterisation** (RepVGG style): every convolution is trained as the
  sum of a k×k×k conv + BN, a 1×1×1 conv + BN and, when shapes allow, an identity BN
  branch; :meth:`GPLWSNet.reparameterize` fuses the branches into one convolution with
  bias, which gives the same outputs with fewer parameters and less work.

Intensity normalisation is *not* part of the module: it must be computed over the whole
stack (not per tile), see :func:`normalize_stack`.

This module holds the network and the maths that turns its output into depth; it does
not load weights (see :mod:`.registry`) or choose devices and tiles (see
:mod:`napari_gplws.dff.network`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Kept here for old imports; the one definition is in the model-card module.
from napari_gplws.models.cards import count_parameters

__all__ = [
    "GPLWSConfig",
    "GPLWSNet",
    "GroupParallelBlock",
    "RepConv3d",
    "count_parameters",
    "cpu_has_bf16",
    "depth_from_logits",
    "depth_to_space",
    "full_resolution_stem",
    "normalize_stack",
    "onednn_features",
]

#: Rec. 601 luma weights used to turn a colour stack into the network's single channel.
LUMA = (0.299, 0.587, 0.114)


@dataclass
class GPLWSConfig:
    """Hyper-parameters of :class:`GPLWSNet` (stored with the weights).

    Parameters
    ----------
    widths
        Channels at the four scales 1/s, 1/2s, 1/4s and 1/8s of the frame size.
    group_size
        Channels per group in the grouped convolutions of the group-parallel blocks.
    deep_blocks
        Number of group-parallel blocks at the coarsest scale.
    s2d
        Space-to-depth factor s of the first step (2 or 4): the backbone starts at 1/s of
        the frame size and a sub-pixel head restores full resolution.
    focus_prior
        Add a fixed (not learned) second input channel: the log band-pass (smoothed
        Laplacian) energy of each frame relative to its mean over the stack. It hands the
        network the classical focus curve from the start, which makes training far cheaper
        (see module notes).
    """

    widths: tuple[int, int, int, int] = (16, 24, 32, 48)
    group_size: int = 4
    deep_blocks: int = 2
    s2d: int = 4
    focus_prior: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPLWSConfig:
        return cls(
            widths=tuple(int(w) for w in d.get("widths", cls.widths)),  # type: ignore[arg-type]
            group_size=int(d.get("group_size", 4)),
            deep_blocks=int(d.get("deep_blocks", 2)),
            s2d=int(d.get("s2d", 2)),
            focus_prior=bool(d.get("focus_prior", False)),
        )


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(v, int):
        return (v, v, v)
    t = tuple(int(x) for x in v)
    assert len(t) == 3
    return t  # type: ignore[return-value]


def _fuse_bn(kernel: torch.Tensor, bn: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a BatchNorm (in eval mode) into the preceding bias-free convolution."""
    std = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / std
    return kernel * scale.reshape(-1, 1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepConv3d(nn.Module):
    """A 3D convolution trained as several branches and fused into one for inference.

    Training form: ``act(BN(conv_k(x)) + BN(conv_1(x)) + BN(x))`` where ``conv_k`` has
    the given kernel, ``conv_1`` is 1×1×1 (present when the kernel is larger) and the
    identity branch is present when ``identity`` is set and the input and output shapes
    agree. After :meth:`fuse` a single convolution with bias replaces all branches.

    Parameters
    ----------
    in_ch, out_ch
        Input and output channels.
    kernel, stride
        Kernel size and stride, as an int or ``(kN, kH, kW)``; odd kernels only.
    groups
        Groups of the convolution (the identity branch respects them).
    identity
        Whether to add the identity-BN branch when possible.
    act
        Whether to apply a ReLU after the sum.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        groups: int = 1,
        identity: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.groups = in_ch, out_ch, groups
        self.kernel, self.stride = _triple(kernel), _triple(stride)
        self.padding = tuple(k // 2 for k in self.kernel)
        self.conv_k = nn.Conv3d(
            in_ch, out_ch, self.kernel, self.stride, self.padding, groups=groups, bias=False
        )
        self.bn_k = nn.BatchNorm3d(out_ch)
        if self.kernel != (1, 1, 1):
            self.conv_1 = nn.Conv3d(in_ch, out_ch, 1, self.stride, 0, groups=groups, bias=False)
            self.bn_1: nn.BatchNorm3d | None = nn.BatchNorm3d(out_ch)
        else:
            self.conv_1 = None  # type: ignore[assignment]
            self.bn_1 = None
        use_id = identity and in_ch == out_ch and self.stride == (1, 1, 1)
        self.bn_id = nn.BatchNorm3d(in_ch) if use_id else None
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()
        self.fused: nn.Conv3d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        y = self.bn_k(self.conv_k(x))
        if self.conv_1 is not None and self.bn_1 is not None:
            y = y + self.bn_1(self.conv_1(x))
        if self.bn_id is not None:
            y = y + self.bn_id(x)
        return self.act(y)

    @torch.no_grad()
    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of the single convolution equivalent to all branches (eval mode)."""
        kernel, bias = _fuse_bn(self.conv_k.weight, self.bn_k)
        kn, kh, kw = self.kernel
        if self.conv_1 is not None and self.bn_1 is not None:
            k1, b1 = _fuse_bn(self.conv_1.weight, self.bn_1)
            pad = (kw // 2, kw // 2, kh // 2, kh // 2, kn // 2, kn // 2)
            kernel = kernel + F.pad(k1, pad)
            bias = bias + b1
        if self.bn_id is not None:
            ipg = self.in_ch // self.groups
            ident = torch.zeros_like(self.conv_k.weight)
            for o in range(self.out_ch):
                ident[o, o % ipg, kn // 2, kh // 2, kw // 2] = 1.0
            kid, bid = _fuse_bn(ident, self.bn_id)
            kernel = kernel + kid
            bias = bias + bid
        return kernel, bias

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the branches by one convolution with bias (idempotent)."""
        if self.fused is not None:
            return
        kernel, bias = self.fused_kernel_bias()
        conv = nn.Conv3d(
            self.in_ch, self.out_ch, self.kernel, self.stride, self.padding,
            groups=self.groups, bias=True,
        ).to(kernel.device, kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)  # type: ignore[union-attr]
        self.fused = conv
        for name in ("conv_k", "bn_k", "conv_1", "bn_1", "bn_id"):
            if hasattr(self, name):
                delattr(self, name)
        self.conv_k = None  # type: ignore[assignment]
        self.bn_k = None  # type: ignore[assignment]
        self.conv_1 = None  # type: ignore[assignment]
        self.bn_1 = None
        self.bn_id = None


class GroupParallelBlock(nn.Module):
    """Grouped 3×3×3 re-parameterisable conv, then a 1×1×1 conv merging the groups."""

    def __init__(self, ch: int, group_size: int = 4) -> None:
        super().__init__()
        groups = max(1, ch // group_size)
        self.local = RepConv3d(ch, ch, 3, groups=groups)
        self.merge = RepConv3d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(self.local(x))


def _space_to_depth(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, N, H, W) -> (B, s²C, N, H/s, W/s), lossless."""
    b, c, n, h, w = x.shape
    x = x.reshape(b, c, n, h // s, s, w // s, s)
    x = x.permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * s * s, n, h // s, w // s)


def depth_to_space(x: torch.Tensor, s: int) -> torch.Tensor:
    """The network's sub-pixel head layout ``(B, s², N, h, w)`` -> ``(B, N, s·h, s·w)``."""
    b, _, n, h, w = x.shape
    x = x.reshape(b, s, s, n, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, n, h * s, w * s)


_depth_to_space = depth_to_space


def _up2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour ×2 upsampling in H and W (not N)."""
    b, c, n, h, w = x.shape
    x = x.reshape(b, c, n, h, 1, w, 1).expand(b, c, n, h, 2, w, 2)
    return x.reshape(b, c, n, 2 * h, 2 * w)


class GPLWSNet(nn.Module):
    """GPLWS-Net: focus stack in, per-pixel logits over the frames out.

    Parameters
    ----------
    config
        Hyper-parameters; defaults give about 0.115 M parameters in training form
        (0.109 M fused).

    Notes
    -----
    ``forward(x)`` takes a *normalised* float tensor ``(B, C, N, H, W)`` with C = 1 or 3
    (colour is reduced to luma) and returns logits ``(B, N, H, W)``. H and W are padded
    (reflect) to a multiple of :attr:`multiple` and the output cropped back.

    Examples
    --------
    >>> net = GPLWSNet().eval()
    >>> logits = net(torch.rand(1, 1, 7, 33, 50))
    >>> tuple(logits.shape)
    (1, 7, 33, 50)
    """

    def __init__(self, config: GPLWSConfig | None = None) -> None:
        super().__init__()
        self.config = config or GPLWSConfig()
        c0, c1, c2, c3 = self.config.widths
        gs = self.config.group_size
        self.s2d = int(self.config.s2d)
        #: H and W are padded to a multiple of this.
        self.multiple = 8 * self.s2d
        in_ch = self.s2d**2 * (2 if self.config.focus_prior else 1)
        self.stem = RepConv3d(in_ch, c0, (1, 3, 3))
        self.enc0 = GroupParallelBlock(c0, gs)
        self.down1 = RepConv3d(c0, c1, (1, 3, 3), stride=(1, 2, 2))
        self.enc1 = GroupParallelBlock(c1, gs)
        self.down2 = RepConv3d(c1, c2, (3, 3, 3), stride=(1, 2, 2))
        self.enc2 = GroupParallelBlock(c2, gs)
        self.down3 = RepConv3d(c2, c3, (3, 3, 3), stride=(1, 2, 2))
        self.enc3 = nn.Sequential(
            *[GroupParallelBlock(c3, gs) for _ in range(self.config.deep_blocks)]
        )
        self.proj3 = RepConv3d(c3, c2, 1, identity=False)
        self.dec2 = GroupParallelBlock(c2, gs)
        self.proj2 = RepConv3d(c2, c1, 1, identity=False)
        self.dec1 = GroupParallelBlock(c1, gs)
        self.proj1 = RepConv3d(c1, c0, 1, identity=False)
        self.dec0 = GroupParallelBlock(c0, gs)
        self.head = RepConv3d(c0, self.s2d**2, (3, 1, 1), identity=False, act=False)
        self.register_buffer("luma", torch.tensor(LUMA).reshape(1, 3, 1, 1, 1), persistent=False)
        lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 3, 3)
        self.register_buffer("laplacian", lap, persistent=False)
        g1 = torch.tensor([1.0, 2.0, 1.0])
        binomial = (g1[:, None] * g1[None, :] / 16.0).reshape(1, 1, 3, 3)
        self.register_buffer("binomial", binomial, persistent=False)

    def focus_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Fixed focus prior: log band-pass energy per frame minus its mean over the stack.

        The frame is smoothed twice with a 3×3 binomial kernel (noise), filtered with a 3×3
        Laplacian, squared and averaged over 5×5 pixels; the log of that energy, relative to
        its mean over the N frames, is the classical focus curve handed to the network.
        ``x`` is ``(B, 1, N, H, W)`` normalised intensity; returns the same shape.
        """
        b, _, n, h, w = x.shape
        f = x.reshape(b * n, 1, h, w)
        # separable shifts and adds: the same numbers as 3×3 convolutions with the
        # `binomial` and `laplacian` kernels, several times faster on a CPU
        for _ in range(2):
            p = F.pad(f, (1, 1, 0, 0), mode="replicate")
            f = (p[..., :-2] + 2.0 * p[..., 1:-1] + p[..., 2:]) * 0.25
            p = F.pad(f, (0, 0, 1, 1), mode="replicate")
            f = (p[..., :-2, :] + 2.0 * p[..., 1:-1, :] + p[..., 2:, :]) * 0.25
        p = F.pad(f, (1, 1, 1, 1), mode="replicate")
        c = p[..., 1:-1, 1:-1]
        lap = p[..., 1:-1, :-2] + p[..., 1:-1, 2:] + p[..., :-2, 1:-1] + p[..., 2:, 1:-1] - 4.0 * c
        e = F.avg_pool2d(lap * lap, 5, stride=1, padding=2, count_include_pad=False)
        e = torch.log(e + 1e-6).reshape(b, 1, n, h, w)
        return e - e.mean(dim=2, keepdim=True)

    # ------------------------------------------------------------------------------------
    @property
    def is_fused(self) -> bool:
        return all(m.fused is not None for m in self.modules() if isinstance(m, RepConv3d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] not in (1, 3):
            raise ValueError(
                f"GPLWSNet expects (B, C, N, H, W) with C = 1 or 3; got {tuple(x.shape)}."
            )
        if x.shape[1] == 3:
            x = (x * self.luma.to(x.dtype)).sum(dim=1, keepdim=True)
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            x = _pad_hw(x, ph, pw)
        if self.config.focus_prior:
            x = torch.cat([x, self.focus_energy(x)], dim=1)
        logits = _depth_to_space(self.forward_features(_space_to_depth(x, self.s2d)), self.s2d)
        return logits[..., :h, :w]

    def forward_features(self, s: torch.Tensor) -> torch.Tensor:
        """The convolutional part: space-to-depth input ``(B, s²·C', N, h, w)`` (C' = 2 with
        the focus prior: the intensity's s² channels, then the prior's) to the head's
        sub-pixel logits ``(B, s², N, h, w)``; ``h``, ``w`` multiples of 8."""
        return _features(self, s, _up2)

    @torch.no_grad()
    def reparameterize(self) -> GPLWSNet:
        """Fuse every multi-branch block into one convolution (in place; returns self).

        The model is switched to eval mode first (BatchNorm statistics are frozen). The
        fused network gives the same outputs up to float rounding and has fewer parameters.
        """
        self.eval()
        for mod in self.modules():
            if isinstance(mod, RepConv3d):
                mod.fuse()
        return self


def _features(net: Any, s: torch.Tensor, up: Any, stem: Any = None) -> torch.Tensor:
    """The U-shaped body of :class:`GPLWSNet` with the blocks of ``net`` (the network or
    its oneDNN copy) and ``up`` as the ×2 upsampling: one definition for both. ``stem``
    replaces ``net.stem`` (the full-resolution form of :func:`full_resolution_stem`)."""
    x0 = net.enc0((net.stem if stem is None else stem)(s))
    x1 = net.enc1(net.down1(x0))
    x2 = net.enc2(net.down2(x1))
    x3 = net.enc3(net.down3(x2))
    y = net.dec2(up(net.proj3(x3)) + x2)
    y = net.dec1(up(net.proj2(y)) + x1)
    y = net.dec0(up(net.proj1(y)) + x0)
    return net.head(y)


def _up2_onednn(x: torch.Tensor) -> torch.Tensor:
    return _up2(x.to_dense()).to_mkldnn()


_ONEDNN_LOCK = threading.Lock()


def full_resolution_stem(model: GPLWSNet) -> nn.Module:
    """The first convolution of a fused network as one that reads full-resolution planes.

    Space-to-depth by s followed by the stem's k×k convolution over s² channels per plane
    is the same linear map as a (k·s)×(k·s) convolution with stride s over the planes
    themselves (padding (k//2)·s): the kernel is only rearranged. Running that instead
    saves the strided copy that space-to-depth needs (on a CPU it cost as much as the
    stem) at the same number of multiply-adds. Returns ``Sequential(conv, ReLU)``, input
    ``(B, planes, N, H, W)`` with H, W multiples of :attr:`GPLWSNet.multiple`.
    """
    conv = model.stem.fused
    if conv is None:
        raise ValueError("full_resolution_stem needs a fused network (call reparameterize()).")
    s = int(model.s2d)
    out_ch, in_ch, kn, kh, kw = conv.weight.shape
    planes = in_ch // (s * s)
    # (o, (plane, row offset, column offset), 1, dy, dx) -> (o, plane, 1, s·dy + row, s·dx + column)
    weight = conv.weight.detach().reshape(out_ch, planes, s, s, kn, kh, kw)
    weight = weight.permute(0, 1, 4, 5, 2, 6, 3).reshape(out_ch, planes, kn, kh * s, kw * s)
    big = nn.Conv3d(
        planes, out_ch, (kn, kh * s, kw * s), stride=(1, s, s),
        padding=(kn // 2, (kh // 2) * s, (kw // 2) * s),
    )
    with torch.no_grad():
        big.weight.copy_(weight)
        big.bias.copy_(conv.bias.detach())  # type: ignore[union-attr]
    return nn.Sequential(big, nn.ReLU()).eval()


def onednn_features(
    model: GPLWSNet, s: torch.Tensor, bf16: bool = False, full_resolution: bool = False
) -> torch.Tensor:
    """:meth:`GPLWSNet.forward_features` of a fused network on the CPU through oneDNN.

    The activations stay in oneDNN's blocked layout from the first convolution to the
    head (no layout conversion around every convolution, and every convolution, also the
    strided and 1×1×1 ones, runs in oneDNN: PyTorch would send small ones of a single
    stack to its slower native kernel). The same numbers as ``forward_features`` up to
    float rounding; with ``bf16`` the convolutions run in bfloat16 (fast on CPUs with
    native bfloat16 instructions; see :func:`cpu_has_bf16`), the result is float32.
    With ``full_resolution`` the input is the planes themselves ``(B, C', N, H, W)``
    (normalised luma, then the focus prior) and the stem reads them directly
    (:func:`full_resolution_stem`): no space-to-depth copy. A oneDNN copy of the weights
    is made once per model and kept with it.
    """
    from torch.utils import mkldnn as mkldnn_utils

    dtype = torch.bfloat16 if bf16 else torch.float
    key = "bf16" if bf16 else "fp32"
    with _ONEDNN_LOCK:
        copies = model.__dict__.setdefault("_onednn_copies", {})
        if key not in copies:
            import copy

            twin = copy.deepcopy(model).eval()
            copies[key] = mkldnn_utils.to_mkldnn(twin, dtype)
        if full_resolution and key + "-stem" not in copies:
            copies[key + "-stem"] = mkldnn_utils.to_mkldnn(full_resolution_stem(model), dtype)
        net = copies[key]
        stem = copies[key + "-stem"] if full_resolution else None
    x = s.to(dtype).contiguous().to_mkldnn()
    out = _features(net, x, _up2_onednn, stem).to_dense()
    return out.float()


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively in oneDNN (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an old or a non-oneDNN build of PyTorch
        return False


def _pad_hw(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Pad H and W at the end, by reflection where the frame is large enough."""
    b, c, n, h, w = x.shape
    x4 = x.reshape(b, c * n, h, w)
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    x4 = F.pad(x4, (0, pw, 0, ph), mode=mode)
    return x4.reshape(b, c, n, h + ph, w + pw)


# ----------------------------------------------------------------------------------------
# From logits to depth, confidence and all-in-focus
# ----------------------------------------------------------------------------------------


def depth_from_logits(
    logits: torch.Tensor, positions: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn logits over the frames into expected index/position, confidence and probability.

    Parameters
    ----------
    logits
        ``(B, N, H, W)``.
    positions
        ``(N,)`` focus positions (any unit, any spacing); ``None`` gives frame indices.

    Returns
    -------
    depth, confidence, prob
        ``depth`` ``(B, H, W)`` = Σ p_k·position_k; ``confidence`` ``(B, H, W)`` in [0, 1] =
        1 − normalised entropy of the probability; ``prob`` ``(B, N, H, W)``.
    """
    n = logits.shape[1]
    prob = torch.softmax(logits.float(), dim=1)
    if positions is None:
        positions = torch.arange(n, dtype=prob.dtype, device=prob.device)
    pos = positions.to(prob.device, prob.dtype).reshape(1, n, 1, 1)
    depth = (prob * pos).sum(dim=1)
    ent = -(prob * torch.log(prob.clamp_min(1e-12))).sum(dim=1)
    confidence = (1.0 - ent / math.log(n)).clamp(0.0, 1.0)
    return depth, confidence, prob


def normalize_stack(
    x: torch.Tensor, lo_pct: float = 0.5, hi_pct: float = 99.5, max_samples: int = 1 << 18
) -> torch.Tensor:
    """Scale each stack of a batch by its own robust intensity range.

    ``(x - p_lo) / (p_hi - p_lo)`` with percentiles taken over the whole stack (all frames,
    channels and pixels; a regular subsample of at most ``max_samples`` values), so that
    8-bit, 16-bit and float stacks look the same to the network.

    Parameters
    ----------
    x
        ``(B, C, N, H, W)`` any real dtype.

    Returns
    -------
    torch.Tensor
        float32 tensor of the same shape.
    """
    x = x.float()
    b = x.shape[0]
    flat = x.reshape(b, -1)
    step = max(1, flat.shape[1] // max_samples)
    sample = flat[:, ::step]
    levels = torch.tensor([lo_pct / 100.0, hi_pct / 100.0], device=x.device)
    q = torch.quantile(sample, levels, dim=1)
    lo, hi = q[0], q[1]
    scale = (hi - lo).clamp_min(1e-6 * (hi.abs() + 1.0))
    shape = (b,) + (1,) * (x.ndim - 1)
    return (x - lo.reshape(shape)) / scale.reshape(shape)
