"""PyTorch BNNs as their authors write them (STE arithmetic and all), for the ONNX frontend tests.

- :class:`ReActNetA`: ReActNet-A blocks (Liu et al. 2020): RSign (learnable threshold, the piecewise-polynomial STE
  ``sign(x).detach() - f(x).detach() + f(x)``), binary 3×3 and 1×1 convs with ``mean|W|`` scales and the clamp STE
  ``a·sign(W) - clamp(W).detach() + clamp(W)``, BatchNorm, shortcuts (avg-pooled on stride 2, channels
  duplicated through two 1×1 convs), RPReLU (``PReLU(x - b) + b'``).
- :class:`BiRealNet18`: Bi-Real Net 18 (Liu et al. 2018): a shortcut around every binary 3×3 conv, float 1×1
  downsampling after average pooling.
- :class:`XNORNet`: XNOR-Net (Rastegari et al. 2016): BN → sign (an ``autograd.Function``) → conv with ``sign(W) ·
  mean|W|`` weights → × K, the activation scale ``K = mean_c|x| ∗ (1/k²)``; a binary fully-connected layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


# ---------------------------------------------------------------------------------------------------- activations
class PolySign(nn.Module):
    """ReActNet's / Bi-Real's BinaryActivation: sign forward, piecewise-polynomial gradient."""

    def forward(self, x):
        out_forward = torch.sign(x)
        mask1, mask2, mask3 = x < -1, x < 0, x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        return out_forward.detach() - out3.detach() + out3


class HardTanhSign(nn.Module):
    """The plain STE: sign forward, hard-tanh gradient."""

    def forward(self, x):
        c = torch.clamp(x, -1.0, 1.0)
        return torch.sign(x).detach() - c.detach() + c


class _SignFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class LearnableBias(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return x + self.bias.expand_as(x)


class RSign(nn.Module):
    """ReActNet's RSign: ``sign(x - b)`` with a learnable per-channel threshold ``b``."""

    def __init__(self, c: int):
        super().__init__()
        self.move, self.sign = LearnableBias(c), PolySign()

    def forward(self, x):
        return self.sign(self.move(x))


class RPReLU(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.move0, self.prelu, self.move1 = LearnableBias(c), nn.PReLU(c), LearnableBias(c)

    def forward(self, x):
        return self.move1(self.prelu(self.move0(x)))


# ---------------------------------------------------------------------------------------------------- binary convs
def _latent(*shape: int) -> torch.Tensor:
    """Latent weights as after training: no exact zeros (torch.randn has a few in a million, and Sign(0) = 0
    would make a kernel ternary; test_onnx checks that case separately)."""
    w = torch.randn(*shape) * 0.1
    return torch.where(w == 0, torch.full_like(w, 1e-3), w)


class HardBinaryConv(nn.Module):
    """ReActNet / Bi-Real weights: ``mean|W|`` per output channel × sign(W), clamp STE around it."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(_latent(cout, cin, k, k))

    def forward(self, x):
        w = self.weight
        scale = torch.mean(torch.mean(torch.mean(abs(w), dim=3, keepdim=True), dim=2, keepdim=True), dim=1,
                           keepdim=True).detach()
        bw_no_grad = scale * torch.sign(w)
        clipped = torch.clamp(w, -1.0, 1.0)
        bw = bw_no_grad.detach() - clipped.detach() + clipped
        return F.conv2d(x, bw, stride=self.stride, padding=self.padding)


# ---------------------------------------------------------------------------------------------------- networks
def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():  # non-trivial statistics, as after training
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


class ReActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.sign1, self.conv3, self.bn1 = RSign(cin), HardBinaryConv(cin, cin, 3, stride, 1), _bn(cin)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else None
        self.act1 = RPReLU(cin)
        self.sign2 = RSign(cin)
        self.cin, self.cout = cin, cout
        if cout == cin:
            self.pw, self.bn2 = HardBinaryConv(cin, cout, 1, 1, 0), _bn(cout)
        else:  # ReActNet-A doubles channels with two 1×1 convs on the same input, each with its own shortcut
            self.pw_a, self.pw_b = HardBinaryConv(cin, cin, 1, 1, 0), HardBinaryConv(cin, cin, 1, 1, 0)
            self.bn2_a, self.bn2_b = _bn(cin), _bn(cin)
        self.act2 = RPReLU(cout)

    def forward(self, x):
        short = self.pool(x) if self.pool is not None else x
        out1 = self.act1(self.bn1(self.conv3(self.sign1(x))) + short)
        s = self.sign2(out1)
        if self.cout == self.cin:
            out2 = self.bn2(self.pw(s)) + out1
        else:
            out2 = torch.cat([self.bn2_a(self.pw_a(s)) + out1, self.bn2_b(self.pw_b(s)) + out1], dim=1)
        return self.act2(out2)


class _BlockNet(nn.Module):
    """stem → blocks (each built by ``block(cin, cout, stride)``) → global average pool → float classifier."""

    def __init__(self, stem: nn.Module, c: int, block, plan, classes: int):
        super().__init__()
        self.stem, blocks = stem, []
        for w, s in plan:
            blocks.append(block(c, w, s))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ReActNet-A as published (MobileNet-v1 widths and strides); the tests' default is its first five blocks, narrow.
REACTNET_A_FULL = {"stem": 32, "widths": (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024),
                   "strides": (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)}


class ReActNetA(_BlockNet):
    """Stem (float 3×3, stride 2) → ReActNet-A blocks → global average pool → float classifier."""

    def __init__(self, widths=(32, 64, 64, 128, 128), strides=(1, 2, 1, 2, 1), classes: int = 10,
                 stem: int | None = None):
        c = stem or widths[0]
        super().__init__(nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), _bn(c)), c, ReActBlock,
                         zip(widths, strides, strict=True), classes)


class BiRealBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.sign, self.conv, self.bn = PolySign(), HardBinaryConv(cin, cout, 3, stride, 1), _bn(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.AvgPool2d(2, stride) if stride != 1 else nn.Identity(),
                                      nn.Conv2d(cin, cout, 1, bias=False), _bn(cout))

    def forward(self, x):
        short = x if self.down is None else self.down(x)
        return self.bn(self.conv(self.sign(x))) + short


class BiRealNet18(_BlockNet):
    """Bi-Real Net 18: 4 stages × 4 binary 3×3 convs, each with its own shortcut."""

    def __init__(self, widths=(16, 32, 64, 128), classes: int = 10):
        stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), _bn(widths[0]), nn.MaxPool2d(2))
        plan = [(w, 2 if (j == 0 and i > 0) else 1) for i, w in enumerate(widths) for j in range(4)]
        super().__init__(stem, widths[0], BiRealBlock, plan, classes)


class XNORConv(nn.Module):
    """BN → sign → conv(sign(W)·mean|W|) × K → ReLU, K the mean |input| averaged over the conv window."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.bn = _bn(cin)
        self.k, self.stride, self.padding = k, stride, padding
        self.weight = nn.Parameter(_latent(cout, cin, k, k))

    def forward(self, x):
        x = self.bn(x)
        a = torch.mean(x.abs(), dim=1, keepdim=True)
        kk = torch.full((1, 1, self.k, self.k), 1.0 / (self.k * self.k))
        scale_k = F.conv2d(a, kk, stride=self.stride, padding=self.padding)
        alpha = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        y = F.conv2d(_SignFn.apply(x), torch.sign(self.weight) * alpha, stride=self.stride, padding=self.padding)
        return F.relu(y * scale_k)


class XNORLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(cin)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
        self.weight = nn.Parameter(_latent(cout, cin))

    def forward(self, x):
        x = self.bn(x)
        alpha = self.weight.abs().mean(dim=1, keepdim=True)
        return F.linear(HardTanhSign()(x), torch.sign(self.weight) * alpha)


class XNORNet(nn.Module):
    """A float first and last layer, XNOR convs between, a binary fully-connected layer."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
        self.convs = nn.Sequential(XNORConv(32, 64), nn.MaxPool2d(2), XNORConv(64, 64), XNORConv(64, 128, 3, 2),
                                   XNORConv(128, 128))
        self.fc1 = XNORLinear(128 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.flatten(self.convs(self.stem(x)), 1)
        return self.fc2(F.relu(self.fc1(x)))


MODELS = {"reactnet_a": ReActNetA, "bireal18": BiRealNet18, "xnornet": XNORNet}
# Binary layers each model has (what the frontend must recognise): convs + fully-connected.
BINARY_LAYERS = {"reactnet_a": 5 + 5 + 2, "bireal18": 16, "xnornet": 4 + 1}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[name]().eval()


def export(model: nn.Module, path, *, shape=(1, 3, 32, 32), dynamo: bool = False, opset: int = 17, **kw) -> None:
    """``model`` → ``path`` (.onnx) with the TorchScript (``dynamo=False``) or torch.export exporter; ``kw`` go
    to ``torch.onnx.export`` (e.g. ``dynamic_axes``)."""
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["output"],
                          opset_version=opset, dynamo=dynamo, **kw)
