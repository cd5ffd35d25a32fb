#!/usr/bin/python3
"""Generate Tandem's small ONNX test models with reference input/output data.

Each model is written in the ONNX backend test-data layout::

    <out>/<name>/model.onnx
    <out>/<name>/test_data_set_0/input_0.pb ... input_K.pb, output_0.pb ...
    <out>/<name>/test_data_set_1/...            (different batch / sequence size)

All weights are random (fixed seeds, no pretrained weights); the reference
outputs are PyTorch's float32 outputs for the same inputs.

Must be run with Debian's interpreter, which has torch 1.13 and onnx 1.12:

    /usr/bin/python3 tools/gen_models.py --out models
    /usr/bin/python3 tools/gen_models.py --out /tmp/big --size large
    /usr/bin/python3 tools/gen_models.py --verify models
"""

import argparse
import collections
import glob
import math
import os
import shutil
import sys
import tempfile
import time

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover
    sys.exit(
        "gen_models.py needs torch, onnx and numpy; run it with /usr/bin/python3 "
        "(Debian's python, torch 1.13 / onnx 1.12). Import error: %s" % exc
    )


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def gn_groups(channels):
    """GroupNorm group count: 32 like SD for wide layers, fewer for narrow ones."""
    return max(1, min(32, channels // 4))


def silu(x):
    return x * torch.sigmoid(x)


# ----------------------------------------------------------------------------
# 1. Stable-Diffusion-style UNet
# ----------------------------------------------------------------------------


def timestep_embedding(timesteps, dim, max_period=10000.0):
    """Sinusoidal embedding (diffusers Timesteps, flip_sin_to_cos=True, shift 0)."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / half
    freqs = torch.exp(exponent)
    args = timesteps[:, None].float() * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb_ch):
        super().__init__()
        self.norm1 = nn.GroupNorm(gn_groups(cin), cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = nn.GroupNorm(gn_groups(cout), cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """Multi-head attention written with plain MatMul/Softmax math."""

    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        context_dim = context_dim or dim
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def split_heads(self, t):
        b, n, c = t.shape
        return t.reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, context=None):
        context = x if context is None else context
        q = self.split_heads(self.to_q(x))
        k = self.split_heads(self.to_k(context))
        v = self.split_heads(self.to_v(context))
        attn = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = attn.softmax(dim=-1)
        out = torch.matmul(attn, v)  # [b, heads, n, d]
        b, hd, n, d = out.shape
        out = out.permute(0, 2, 1, 3).reshape(b, n, hd * d)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)  # exact (erf) GELU


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim, ff_mult):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(GEGLU(dim, dim * ff_mult), nn.Linear(dim * ff_mult, dim))

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        return x


class Transformer2D(nn.Module):
    """GroupNorm, proj_in, one BasicTransformerBlock over the h*w tokens,
    proj_out, residual.  proj_in/proj_out are 1x1 convs applied on the
    feature map (SD 1.x), or with linear_proj Linear layers applied on the
    tokens (SD 2.x, diffusers use_linear_projection=True)."""

    def __init__(self, ch, heads, context_dim, ff_mult, linear_proj=False):
        super().__init__()
        self.linear_proj = linear_proj
        self.norm = nn.GroupNorm(gn_groups(ch), ch, eps=1e-6)
        self.proj_in = nn.Linear(ch, ch) if linear_proj else nn.Conv2d(ch, ch, 1)
        self.block = BasicTransformerBlock(ch, heads, context_dim, ff_mult)
        self.proj_out = nn.Linear(ch, ch) if linear_proj else nn.Conv2d(ch, ch, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        res = x
        if self.linear_proj:
            x = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
            x = self.proj_out(self.block(self.proj_in(x), context))
            return x.reshape(b, h, w, c).permute(0, 3, 1, 2) + res
        x = self.proj_in(self.norm(x))
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        x = self.block(x, context)
        x = x.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return self.proj_out(x) + res


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TinyUNet(nn.Module):
    """diffusers-UNet2DConditionModel-shaped UNet at reduced width.

    Down levels: `layers` ResBlocks (+ Transformer2D where attn), downsample
    between levels; skips pushed after conv_in, after every block and after
    every downsample; mid = Res, Transformer, Res; up levels: layers+1 blocks,
    each consuming one skip by channel concat, nearest upsample + conv.

    `heads` is one head count for every level; `head_dim` instead fixes the
    head size, so a level of width C gets C // head_dim heads (SD 2.x).
    `linear_proj` gives Transformer2D Linear proj_in/proj_out (SD 2.x).
    """

    def __init__(self, channels=(32, 64, 64), attn=(False, True, True), layers=1,
                 heads=4, context_dim=1024, ff_mult=4, in_ch=4, out_ch=4,
                 head_dim=None, linear_proj=False):
        super().__init__()

        def transformer(ch):
            nheads = ch // head_dim if head_dim else heads
            return Transformer2D(ch, nheads, context_dim, ff_mult, linear_proj)

        c0 = channels[0]
        temb_ch = 4 * c0
        self.c0 = c0
        self.time_linear_1 = nn.Linear(c0, temb_ch)
        self.time_linear_2 = nn.Linear(temb_ch, temb_ch)
        self.conv_in = nn.Conv2d(in_ch, c0, 3, padding=1)

        nlev = len(channels)
        self.down = nn.ModuleList()
        skip_ch = [c0]
        ch = c0
        for i, cout in enumerate(channels):
            lev = nn.Module()
            lev.res = nn.ModuleList()
            lev.attn = nn.ModuleList()
            for _ in range(layers):
                lev.res.append(ResBlock(ch, cout, temb_ch))
                lev.attn.append(transformer(cout) if attn[i] else nn.Identity())
                ch = cout
                skip_ch.append(ch)
            lev.downsample = Downsample(ch) if i < nlev - 1 else None
            if lev.downsample is not None:
                skip_ch.append(ch)
            self.down.append(lev)

        self.mid_res1 = ResBlock(ch, ch, temb_ch)
        self.mid_attn = transformer(ch)
        self.mid_res2 = ResBlock(ch, ch, temb_ch)

        self.up = nn.ModuleList()
        for i in reversed(range(nlev)):
            cout = channels[i]
            lev = nn.Module()
            lev.res = nn.ModuleList()
            lev.attn = nn.ModuleList()
            for _ in range(layers + 1):
                lev.res.append(ResBlock(ch + skip_ch.pop(), cout, temb_ch))
                lev.attn.append(transformer(cout) if attn[i] else nn.Identity())
                ch = cout
            lev.upsample = Upsample(ch) if i > 0 else None
            self.up.append(lev)
        assert not skip_ch

        self.norm_out = nn.GroupNorm(gn_groups(ch), ch, eps=1e-5)
        self.conv_out = nn.Conv2d(ch, out_ch, 3, padding=1)

    @staticmethod
    def _apply(block, x, ctx):
        return x if isinstance(block, nn.Identity) else block(x, ctx)

    def forward(self, sample, timestep, encoder_hidden_states):
        # one timestep shared by the batch (like diffusers: expand to batch)
        t = timestep.expand(sample.shape[0])
        temb = timestep_embedding(t, self.c0)
        temb = self.time_linear_2(F.silu(self.time_linear_1(temb)))
        ctx = encoder_hidden_states

        x = self.conv_in(sample)
        skips = [x]
        for lev in self.down:
            for res, at in zip(lev.res, lev.attn):
                x = self._apply(at, res(x, temb), ctx)
                skips.append(x)
            if lev.downsample is not None:
                x = lev.downsample(x)
                skips.append(x)

        x = self.mid_res1(x, temb)
        x = self.mid_attn(x, ctx)
        x = self.mid_res2(x, temb)

        for lev in self.up:
            for res, at in zip(lev.res, lev.attn):
                x = torch.cat([x, skips.pop()], dim=1)
                x = self._apply(at, res(x, temb), ctx)
            if lev.upsample is not None:
                x = lev.upsample(x)

        return self.conv_out(F.silu(self.norm_out(x)))


def init_unet(model):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # Kaiming-like gain keeps activations O(1) through SiLU stacks.
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            if m.bias is not None:
                nn.init.normal_(m.bias, std=0.05)
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            nn.init.uniform_(m.weight, 0.75, 1.25)
            nn.init.normal_(m.bias, std=0.1)
    for m in model.modules():
        if isinstance(m, Attention):
            # sharper-than-uniform attention so Softmax is actually exercised
            m.to_q.weight.data.mul_(1.5)
            m.to_k.weight.data.mul_(1.5)
        if isinstance(m, (Transformer2D, ResBlock)):
            # damp residual branches so the residual stream does not blow up
            last = m.proj_out if isinstance(m, Transformer2D) else m.conv2
            last.weight.data.mul_(0.5)


def make_unet(size):
    # Like SD 2.x the attention head *dim* is fixed (16 here) and the head count
    # follows the width.  Tiny: 48-wide attention levels -> 3 heads (a 64-wide
    # [32,64,64] variant would be ~10 MB; the 1024->C cross-attention K/V
    # projections dominate).  Large: 128 wide -> 8 heads.
    if size == "sd21":
        model = make_sd21_unet()
    elif size == "large":
        model = TinyUNet(channels=(64, 128, 128), attn=(False, True, True), heads=8)
    else:
        model = TinyUNet(channels=(32, 48, 48), attn=(False, True, True), heads=3)
    init_unet(model)
    return model


def make_sd21_unet():
    """A UNet with Stable Diffusion 2.1's configuration and size (random weights).

    As diffusers' UNet2DConditionModel is configured for SD 2.1: block widths
    320/640/1280/1280, two layers per block; down blocks CrossAttnDownBlock2D
    x3 + DownBlock2D, mid UNetMidBlock2DCrossAttn, up blocks UpBlock2D +
    CrossAttnUpBlock2D x3 (three ResBlocks each); cross-attention dim 1024,
    head dim 64 (5/10/20/20 heads), linear proj_in/proj_out, GEGLU
    feed-forward (inner 4x), one transformer block per Transformer2D,
    GroupNorm with 32 groups (eps 1e-5; 1e-6 in Transformer2D), time
    embedding 320 -> 1280 -> 1280.  That gives 865,910,724 parameters in 686
    tensors, SD 2.1's UNet parameter count.

    Where it differs from diffusers: the parameter names are TinyUNet's (no
    mapping to SD checkpoints); the timestep is one value for the whole batch,
    as in sd_unet_tiny; attention is plain MatMul/Softmax math in float32
    (SD 2.1's upcast_attention changes nothing in float32); the weights are
    random (init_unet), not trained.
    """
    return TinyUNet(channels=(320, 640, 1280, 1280), attn=(True, True, True, False), layers=2,
                    head_dim=64, context_dim=1024, ff_mult=4, linear_proj=True)


def unet_spec(size):
    def build():
        torch.manual_seed({"small": 1234, "large": 4321, "sd21": 2100}[size])
        return make_unet(size)

    def inputs(set_idx, rng):
        b = (1, 2)[set_idx]
        t = (500.0, 981.0)[set_idx]
        return [
            rng.standard_normal((b, 4, 64, 64)).astype(np.float32),
            np.array([t], dtype=np.float32),
            rng.standard_normal((b, 77, 1024)).astype(np.float32),
        ]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["sample", "timestep", "encoder_hidden_states"],
        output_names=["out_sample"],
        dynamic_axes={
            "sample": {0: "batch"},
            "encoder_hidden_states": {0: "batch"},
            "out_sample": {0: "batch"},
        },
        training=torch.onnx.TrainingMode.EVAL,
        # over protobuf's 2 GB: weights go to model.onnx.data next to model.onnx
        external_data=size == "sd21",
    )


# ----------------------------------------------------------------------------
# BatchNorm helpers (CNNs)
# ----------------------------------------------------------------------------


def randomize_and_calibrate_bn(model, input_shape, seed):
    """Random affine BN params, then running stats from random data.

    Running stats are estimated with a cumulative average over a few random
    batches, so eval-mode BN keeps activations O(1) while mean/var are far from
    the default 0/1.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.6, 1.4, generator=g)
            m.bias.data.normal_(0.0, 0.2, generator=g)
            m.momentum = None  # cumulative moving average
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.randn(8, *input_shape[1:], generator=g))
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1


# ----------------------------------------------------------------------------
# 2. ResNet-style CNN
# ----------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + idt)


class ResNetTiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet_spec():
    def build():
        torch.manual_seed(2001)
        m = ResNetTiny()
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(m.fc.weight, std=1.0 / math.sqrt(64) * 2.0)
        nn.init.normal_(m.fc.bias, std=0.1)
        randomize_and_calibrate_bn(m, (1, 3, 64, 64), 2002)
        return m

    def inputs(set_idx, rng):
        b = (1, 2)[set_idx]
        return [rng.standard_normal((b, 3, 64, 64)).astype(np.float32)]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        # PRESERVE on an eval-mode model skips torch's Conv+BN fusion, so this
        # model keeps explicit BatchNormalization nodes (mobilenet_tiny fuses).
        training=torch.onnx.TrainingMode.PRESERVE,
    )


# ----------------------------------------------------------------------------
# 3. MobileNetV2-style CNN
# ----------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, ch, reduced):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(ch, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, ch, 1)

    def forward(self, x):
        s = self.pool(x)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


def conv_bn_act(cin, cout, k, stride, groups, act):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand, se=False, hswish=False):
        super().__init__()
        hidden = cin * expand
        act = nn.Hardswish if hswish else nn.ReLU6
        layers = []
        if expand != 1:
            layers.append(conv_bn_act(cin, hidden, 1, 1, 1, act))
        layers.append(conv_bn_act(hidden, hidden, 3, stride, hidden, act))  # depthwise
        if se:
            layers.append(SqueezeExcite(hidden, max(8, hidden // 4)))
        layers.append(conv_bn_act(hidden, cout, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetTiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_act(3, 16, 3, 2, 1, nn.ReLU6),            # 32x32
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 4),                   # 16x16
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4, se=True, hswish=True),  # 8x8
            InvertedResidual(32, 32, 1, 4, se=True, hswish=True),
            conv_bn_act(32, 128, 1, 1, 1, nn.Hardswish),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_spec():
    def build():
        torch.manual_seed(3001)
        m = MobileNetTiny()
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
                if mod.bias is not None:
                    nn.init.normal_(mod.bias, std=0.1)
        nn.init.normal_(m.classifier.weight, std=2.0 / math.sqrt(128))
        nn.init.normal_(m.classifier.bias, std=0.1)
        randomize_and_calibrate_bn(m, (1, 3, 64, 64), 3002)
        return m

    def inputs(set_idx, rng):
        b = (1, 2)[set_idx]
        return [rng.standard_normal((b, 3, 64, 64)).astype(np.float32)]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=torch.onnx.TrainingMode.EVAL,  # Conv+BN folded by the exporter
    )


# ----------------------------------------------------------------------------
# 4. BERT-style encoder
# ----------------------------------------------------------------------------


class BertLayer(nn.Module):
    def __init__(self, hidden, heads, ffn):
        super().__init__()
        self.heads = heads
        self.sqrt_head_dim = math.sqrt(hidden // heads)
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=1e-12)

    def split(self, t):
        b, s, h = t.shape
        return t.reshape(b, s, self.heads, h // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, ext_mask):
        b, s, h = x.shape
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.sqrt_head_dim
        scores = scores + ext_mask
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, s, h)
        x = self.ln1(self.attn_out(ctx) + x)
        y = self.ffn_out(F.gelu(self.ffn_in(x)))  # exact erf GELU
        return self.ln2(y + x)


class BertTiny(nn.Module):
    def __init__(self, vocab=1000, hidden=64, heads=4, ffn=256, layers=2, max_pos=64, type_vocab=2):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_pos, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.emb_ln = nn.LayerNorm(hidden, eps=1e-12)
        self.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0))
        self.layers = nn.ModuleList([BertLayer(hidden, heads, ffn) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, input_ids, attention_mask):
        seq_len = input_ids.shape[1]
        pos_ids = self.position_ids[:, :seq_len]
        token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(pos_ids)
             + self.token_type_embeddings(token_type_ids))
        x = self.emb_ln(x)
        ext = attention_mask[:, None, None, :].to(torch.float32)
        ext = (1.0 - ext) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return x, pooled


def bert_spec():
    def build():
        torch.manual_seed(4001)
        m = BertTiny()
        for mod in m.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=1.0 / math.sqrt(mod.in_features))
                nn.init.normal_(mod.bias, std=0.05)
            elif isinstance(mod, nn.Embedding):
                nn.init.normal_(mod.weight, std=0.5)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.uniform_(mod.weight, 0.75, 1.25)
                nn.init.normal_(mod.bias, std=0.1)
        for layer in m.layers:  # sharper attention
            layer.q.weight.data.mul_(1.5)
            layer.k.weight.data.mul_(1.5)
        m.pooler.weight.data.mul_(0.5)  # keep tanh out of saturation
        return m

    def inputs(set_idx, rng):
        b, s = ((1, 16), (2, 24))[set_idx]
        valid = ((12,), (24, 18))[set_idx]  # trailing zeros in the mask
        ids = rng.integers(1, 1000, size=(b, s), dtype=np.int64)
        mask = np.zeros((b, s), dtype=np.int64)
        for r, n in enumerate(valid):
            mask[r, :n] = 1
            ids[r, n:] = 0  # [PAD]
        return [ids, mask]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state", "pooled"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "last_hidden_state": {0: "batch", 1: "sequence"},
            "pooled": {0: "batch"},
        },
        training=torch.onnx.TrainingMode.EVAL,
    )

# ----------------------------------------------------------------------------
# 5. GPT-style decoder
# ----------------------------------------------------------------------------


class GPTBlock(nn.Module):
    """Pre-LN GPT-2 block: fused QKV projection, causal self-attention, tanh-GELU MLP."""

    def __init__(self, hidden, heads, ffn):
        super().__init__()
        self.heads = heads
        self.scale = (hidden // heads) ** -0.5
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-5)
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-5)
        self.c_fc = nn.Linear(hidden, ffn)
        self.act = nn.GELU(approximate="tanh")
        self.mlp_proj = nn.Linear(ffn, hidden)

    def split(self, t):
        b, s, h = t.shape
        return t.reshape(b, s, self.heads, h // self.heads).permute(0, 2, 1, 3)

    def forward(self, x, causal):
        b, s, h = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=-1)
        q, k, v = self.split(q), self.split(k), self.split(v)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        # like HF GPT-2: masked scores are set to the float32 minimum
        scores = torch.where(causal, scores, torch.tensor(torch.finfo(torch.float32).min))
        probs = scores.softmax(dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, s, h)
        x = x + self.c_proj(ctx)
        return x + self.mlp_proj(self.act(self.c_fc(self.ln_2(x))))


class GPTTiny(nn.Module):
    def __init__(self, vocab=1000, hidden=64, heads=4, ffn=256, layers=2, max_pos=64):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_pos, hidden)
        self.blocks = nn.ModuleList([GPTBlock(hidden, heads, ffn) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, input_ids):
        seq_len = input_ids.shape[1]
        pos = torch.arange(seq_len, dtype=torch.int64)           # Range
        x = self.wte(input_ids) + self.wpe(pos)[None]
        causal = pos[None, :] <= pos[:, None]                      # [S, S] bool, key <= query
        for blk in self.blocks:
            x = blk(x, causal)
        return self.lm_head(self.ln_f(x))


def gpt_spec(size):
    cfg = dict(tiny=dict(vocab=512, hidden=32, heads=4, ffn=128, layers=2, max_pos=64),
               small=dict(vocab=1000, hidden=256, heads=8, ffn=1024, layers=4, max_pos=256))[size]

    def build():
        torch.manual_seed(5001 if size == "tiny" else 5101)
        m = GPTTiny(**cfg)
        for mod in m.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=1.0 / math.sqrt(mod.in_features))
                if mod.bias is not None:
                    nn.init.normal_(mod.bias, std=0.05)
            elif isinstance(mod, nn.Embedding):
                nn.init.normal_(mod.weight, std=0.5)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.uniform_(mod.weight, 0.75, 1.25)
                nn.init.normal_(mod.bias, std=0.1)
        for blk in m.blocks:
            h = blk.c_attn.in_features
            blk.c_attn.weight.data[: 2 * h].mul_(1.5)  # sharper attention (q and k rows)
            blk.c_proj.weight.data.mul_(0.5)            # damp residual branches
            blk.mlp_proj.weight.data.mul_(0.5)
        return m

    def inputs(set_idx, rng):
        b, s = (((1, 8), (2, 12)) if size == "tiny" else ((1, 32), (2, 48)))[set_idx]
        return [rng.integers(0, cfg["vocab"], size=(b, s), dtype=np.int64)]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}},
        training=torch.onnx.TrainingMode.EVAL,
    )


# ----------------------------------------------------------------------------
# 6. Recurrent text models (LSTM / GRU)
# ----------------------------------------------------------------------------


class RNNText(nn.Module):
    """Embedding -> multi-layer LSTM/GRU (batch_first) -> Linear per token."""

    def __init__(self, cell, vocab, emb, hidden, layers, bidirectional, classes):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(emb, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), classes)

    def forward(self, input_ids):
        y, _ = self.rnn(self.embedding(input_ids))
        return self.head(y)


def rnn_spec(cell, size):
    # The LSTM is unidirectional (forward), the GRU bidirectional, so both
    # ONNX `direction` values are covered.
    bidir = cell == "gru"
    cfg = dict(tiny=dict(vocab=1000, emb=32, hidden=32, layers=2, classes=16),
               small=dict(vocab=1000, emb=128, hidden=256, layers=2, classes=1000))[size]

    def build():
        torch.manual_seed({"lstm": 6001, "gru": 7001}[cell] + (0 if size == "tiny" else 100))
        m = RNNText(cell, bidirectional=bidir, **cfg)
        nn.init.normal_(m.embedding.weight, std=1.0)
        for name, p in m.rnn.named_parameters():
            if name.startswith("weight"):
                nn.init.normal_(p, std=1.5 / math.sqrt(p.shape[1]))
            else:
                nn.init.normal_(p, std=0.2)
        nn.init.normal_(m.head.weight, std=2.0 / math.sqrt(m.head.in_features))
        nn.init.normal_(m.head.bias, std=0.1)
        return m

    def inputs(set_idx, rng):
        b, s = (((1, 10), (2, 14)) if size == "tiny" else ((1, 32), (2, 48)))[set_idx]
        return [rng.integers(0, cfg["vocab"], size=(b, s), dtype=np.int64)]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}},
        training=torch.onnx.TrainingMode.EVAL,
    )


# ----------------------------------------------------------------------------
# 7. torchvision model families (random weights)
# ----------------------------------------------------------------------------

# name -> (torchvision constructor, constructor kwargs, input resolution, seed).
# The full-size ones are on-demand only (`--only torchvision`); tv_mobilenet_v3_tiny
# is the committed CI-sized member of the family.
TORCHVISION_MODELS = collections.OrderedDict([
    ("resnet18", ("resnet18", {}, 224, 8001)),
    ("mobilenet_v3_small", ("mobilenet_v3_small", {}, 224, 8002)),
    ("efficientnet_b0", ("efficientnet_b0", {}, 224, 8003)),
    ("squeezenet1_1", ("squeezenet1_1", {}, 224, 8004)),
    ("shufflenet_v2_x0_5", ("shufflenet_v2_x0_5", {}, 224, 8005)),
    ("densenet121", ("densenet121", {}, 224, 8006)),
    ("regnet_y_400mf", ("regnet_y_400mf", {}, 224, 8007)),
    ("vit_b_16", ("vit_b_16", {}, 224, 8008)),
    # The rest of the CNN families issue 15 profiles.
    ("resnet50", ("resnet50", {}, 224, 8009)),
    ("mobilenet_v2", ("mobilenet_v2", {}, 224, 8010)),
    ("convnext_tiny", ("convnext_tiny", {}, 224, 8011)),
    ("shufflenet_v2_x1_0", ("shufflenet_v2_x1_0", {}, 224, 8012)),
])
TV_TINY = {"tv_mobilenet_v3_tiny": ("mobilenet_v3_small", dict(width_mult=0.25, num_classes=10), 64, 8101)}


def _import_torchvision():
    try:
        import torchvision  # noqa: F401
        import torchvision.models
    except ImportError as exc:
        sys.exit("torchvision is missing (apt-get install python3-torchvision): %s" % exc)
    return torchvision.models


def _last_layer(model):
    last = None
    for mod in model.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            last = mod
    return last


def tv_spec(name):
    ctor, kwargs, res, seed = TORCHVISION_MODELS[name] if name in TORCHVISION_MODELS else TV_TINY[name]

    def build():
        tvm = _import_torchvision()
        torch.manual_seed(seed)
        m = getattr(tvm, ctor)(weights=None, **kwargs)
        g = torch.Generator().manual_seed(seed + 1)
        # torchvision's own init (kaiming convs) is kept; zero-initialised
        # classifier heads (ViT) and tiny ones (SqueezeNet, Linear N(0, 0.01))
        # are redrawn, then rescaled below.
        last = _last_layer(m)
        fan_in = last.weight[0].numel()
        last.weight.data.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=g)
        if last.bias is not None:
            last.bias.data.normal_(0.0, 0.1, generator=g)
        bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
        calib = torch.randn(8, 3, res, res, generator=g)
        if bns:
            # random affine BN params, running stats from random data (cumulative average)
            for mod in bns:
                mod.weight.data.uniform_(0.6, 1.4, generator=g)
                mod.bias.data.normal_(0.0, 0.2, generator=g)
                mod.momentum = None
                mod.reset_running_stats()
            m.train()
            with torch.no_grad():
                for i in range(2):
                    m(calib[4 * i: 4 * i + 4])
        m.eval()
        if ctor.startswith("squeezenet"):
            # The final conv is followed by ReLU and average pooling: shift its
            # bias by 2 std of its output so few logits are exactly zero.
            seen = []
            hook = last.register_forward_hook(lambda mod, i, o: seen.append(float(o.std())))
            with torch.no_grad():
                m(calib[:4])
            hook.remove()
            last.bias.data.add_(2.0 * seen[0])
        # rescale the classifier so the logits have std ~1
        with torch.no_grad():
            std = float(m(calib[:4]).std())
        last.weight.data.div_(std)
        if last.bias is not None:
            last.bias.data.div_(std)
        return m

    def inputs(set_idx, rng):
        b = (1, 2)[set_idx]
        return [rng.standard_normal((b, 3, res, res)).astype(np.float32)]

    return dict(
        build=build,
        inputs=inputs,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=torch.onnx.TrainingMode.EVAL,  # Conv+BN folded by the exporter
        grad_enabled=ctor.startswith("vit"),
    )



# ----------------------------------------------------------------------------
# registry / driver
# ----------------------------------------------------------------------------

# Committed CI models (models/<name>/), opset 17.
SMALL_MODELS = ["sd_unet_tiny", "resnet_tiny", "mobilenet_tiny", "bert_tiny",
                "gpt_tiny", "lstm_tiny", "gru_tiny", "tv_mobilenet_v3_tiny"]
# Committed old-opset variants (models/old_opsets/<name>_opset<N>/).
OLD_OPSETS = (9, 11, 13)
OLD_OPSET_BASES = ["mobilenet_tiny", "gpt_tiny"]
OLD_OPSET_MODELS = ["%s_opset%d" % (b, o) for b in OLD_OPSET_BASES for o in OLD_OPSETS]
OLD_OPSET_DIR = "old_opsets"
# On-demand (not committed): the full-size families.
TORCHVISION = list(TORCHVISION_MODELS)
TEXT_LARGE = ["gpt_small", "lstm_small", "gru_small"]
LARGE_MODELS = ["sd_unet_small"] + TORCHVISION + TEXT_LARGE
# On demand, and only by name or their own group (not in `large`): gigabytes.
HUGE_MODELS = ["sd21_unet"]
# Group names accepted by --only.
GROUPS = collections.OrderedDict([
    ("small", SMALL_MODELS),
    ("old_opsets", OLD_OPSET_MODELS),
    ("ci", SMALL_MODELS + OLD_OPSET_MODELS),
    ("torchvision", TORCHVISION),
    ("text", TEXT_LARGE),
    ("large", LARGE_MODELS),
    ("huge", HUGE_MODELS),
])


def split_opset_name(name):
    """'resnet_tiny_opset9' -> ('resnet_tiny', 9); other names -> (name, None)."""
    base, sep, tail = name.rpartition("_opset")
    if sep and tail.isdigit():
        return base, int(tail)
    return name, None


def get_spec(name):
    if name in TORCHVISION_MODELS or name in TV_TINY:
        return tv_spec(name)
    return {
        "sd_unet_tiny": lambda: unet_spec("small"),
        "sd_unet_small": lambda: unet_spec("large"),
        "sd21_unet": lambda: unet_spec("sd21"),
        "resnet_tiny": resnet_spec,
        "mobilenet_tiny": mobilenet_spec,
        "bert_tiny": bert_spec,
        "gpt_tiny": lambda: gpt_spec("tiny"),
        "gpt_small": lambda: gpt_spec("small"),
        "lstm_tiny": lambda: rnn_spec("lstm", "tiny"),
        "lstm_small": lambda: rnn_spec("lstm", "small"),
        "gru_tiny": lambda: rnn_spec("gru", "tiny"),
        "gru_small": lambda: rnn_spec("gru", "small"),
    }[name]()


def tensor_stats(name, arr):
    a = arr.astype(np.float64)
    near0 = float(np.mean(np.abs(a) < 1e-3))
    std = float(a.std())
    ok = 0.1 <= std <= 100.0 and near0 < 0.01 and np.all(np.isfinite(a))
    print("    %-20s shape=%-18s mean=%+.4f std=%.4f min=%+.3f max=%+.3f |x|<1e-3: %.4f%s"
          % (name, list(arr.shape), a.mean(), std, a.min(), a.max(), near0, "" if ok else "   <-- WARN"))
    return ok


def op_histogram(model):
    hist = collections.Counter()

    def walk(graph):
        for n in graph.node:
            hist[(n.domain + "::" if n.domain else "") + n.op_type] += 1
            for attr in n.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return hist


# Weights file of the models saved with external data (spec "external_data").
DATA_FILE = "model.onnx.data"


def save_pb(arr, name, path):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(arr, name).SerializeToString())


def generate(name, out_dir, opset=None, check_onnx=True):
    """Generate one model.  `<base>_opset<N>` names export <base> at opset N
    into `<out_dir>/old_opsets/`; `opset` (--opset) overrides the default 17
    for the other names."""
    base, name_opset = split_opset_name(name)
    if name_opset is not None:
        opset = name_opset
        out_dir = os.path.join(out_dir, OLD_OPSET_DIR)
    elif opset is None:
        opset = 17
    print("=== %s (opset %d)" % (name, opset))
    spec = get_spec(base)
    model = spec["build"]().eval()
    nparams = sum(p.numel() for p in model.parameters())
    print("  parameters: %d (%.2f MB fp32)" % (nparams, nparams * 4 / 1e6))

    mdir = os.path.join(out_dir, name)
    if os.path.isdir(mdir):
        shutil.rmtree(mdir)
    os.makedirs(mdir)

    rng = np.random.default_rng(sum(map(ord, base)))  # deterministic per model (same data for all opsets)
    sets = [spec["inputs"](i, rng) for i in range(2)]

    # reference outputs from torch (float32)
    all_ok = True
    ref = []
    # nn.MultiheadAttention (ViT) takes a fused fast path under no_grad that
    # the ONNX exporter cannot export, so such models run with grad enabled.
    grad_ctx = torch.enable_grad if spec.get("grad_enabled") else torch.no_grad
    with grad_ctx():
        for i, ins in enumerate(sets):
            outs = model(*[torch.from_numpy(a) for a in ins])
            if isinstance(outs, torch.Tensor):
                outs = (outs,)
            outs = [o.detach().numpy().astype(np.float32) for o in outs]
            ref.append(outs)
            print("  test_data_set_%d:" % i)
            for oname, o in zip(spec["output_names"], outs):
                all_ok &= tensor_stats(oname, o)

    path = os.path.join(mdir, "model.onnx")
    external = spec.get("external_data", False)
    # Over 2 GB torch 1.13 writes every initializer to its own file next to
    # the model; export into a scratch folder, then gather them into one
    # model.onnx.data beside model.onnx.
    export_dir = tempfile.mkdtemp(prefix=".export_", dir=mdir) if external else None
    export_path = os.path.join(export_dir, "model.onnx") if external else path
    example = tuple(torch.from_numpy(a) for a in sets[0])
    t0 = time.time()
    with grad_ctx():
        torch.onnx.export(
            model, example, export_path,
            input_names=spec["input_names"],
            output_names=spec["output_names"],
            dynamic_axes=spec["dynamic_axes"],
            opset_version=opset,
            do_constant_folding=True,
            training=spec["training"],
        )

    if external:
        del model, example  # the torch weights are no longer needed
        m = onnx.load(export_path)
        shutil.rmtree(export_dir)
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=DATA_FILE)
        print("  export: %.0f s" % (time.time() - t0))
        del m
        # check_model(ModelProto) serializes the model, which fails over 2 GB:
        # check the file, and shape-infer into a scratch file.
        onnx.checker.check_model(path)
        inferred = os.path.join(mdir, ".inferred.onnx")
        onnx.shape_inference.infer_shapes_path(path, inferred, check_type=True, strict_mode=True)
        os.remove(inferred)
        # the interpreter reads the weights tensor by tensor (base_dir)
        m = onnx.load(path, load_external_data=False)
    else:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
    graph_inputs = [i.name for i in m.graph.input]
    graph_outputs = [o.name for o in m.graph.output]
    assert graph_inputs == spec["input_names"], graph_inputs
    assert graph_outputs == spec["output_names"], graph_outputs

    for i, (ins, outs) in enumerate(zip(sets, ref)):
        sdir = os.path.join(mdir, "test_data_set_%d" % i)
        os.makedirs(sdir)
        for k, (n, a) in enumerate(zip(spec["input_names"], ins)):
            save_pb(a, n, os.path.join(sdir, "input_%d.pb" % k))
        for k, (n, a) in enumerate(zip(spec["output_names"], outs)):
            save_pb(a, n, os.path.join(sdir, "output_%d.pb" % k))

    if check_onnx:
        for i, (ins, outs) in enumerate(zip(sets, ref)):
            got = run_onnx_reference(m, dict(zip(spec["input_names"], ins)), mdir if external else None)
            for n, g, r in zip(spec["output_names"], got, outs):
                if g.shape != r.shape:
                    print("  ONNX CHECK FAIL set %d %s: shape %s vs torch %s" % (i, n, g.shape, r.shape))
                    all_ok = False
                    continue
                err = float(np.max(np.abs(g.astype(np.float64) - r)))
                tol = 1e-4 * max(1.0, float(np.max(np.abs(r))))
                good = err <= tol
                all_ok &= good
                print("  onnx-vs-torch set %d %-18s max|diff|=%.2e %s" % (i, n, err, "ok" if good else "FAIL"))

    hist = op_histogram(m)
    print("  model.onnx: %.2f MB, opset %d, %d nodes, %d initializers"
          % (os.path.getsize(path) / 1e6, opset, sum(hist.values()), len(m.graph.initializer)))
    if external:
        print("  %s: %.2f MB" % (DATA_FILE, os.path.getsize(os.path.join(mdir, DATA_FILE)) / 1e6))
    print("  ops: " + ", ".join("%s=%d" % kv for kv in sorted(hist.items())))
    if not all_ok:
        print("  WARNING: output statistics outside the intended range")
    return all_ok


# ----------------------------------------------------------------------------
# Minimal reference interpreter for the exported graphs
# ----------------------------------------------------------------------------
# onnxruntime is not available here, so after export every model.onnx is run
# node by node by this small interpreter (torch kernels, but driven only by the
# ONNX graph: op types, attributes, initializers) and compared against the
# PyTorch module's outputs.  This catches export problems such as a batch size
# baked into a Reshape.  It supports exactly the ops these models use.


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


_ONNX2TORCH = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.BOOL: torch.bool,
}


def _t(arr):
    return torch.from_numpy(np.array(arr, copy=True))


def _ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def _conv_pads(x, pads, value=0.0):
    n = len(pads) // 2
    begin, end = pads[:n], pads[n:]
    if all(b == e for b, e in zip(begin, end)):
        return x, list(begin)
    torch_pad = []
    for b, e in zip(reversed(begin), reversed(end)):
        torch_pad += [b, e]
    return F.pad(x, torch_pad, value=value), [0] * n


def _run_node(op, a, ins):
    x = ins[0] if ins else None
    if op == "Constant":
        if "value" in a:
            return [_t(numpy_helper.to_array(a["value"]))]
        for k, dt in (("value_int", torch.int64), ("value_ints", torch.int64),
                      ("value_float", torch.float32), ("value_floats", torch.float32)):
            if k in a:
                return [torch.tensor(a[k], dtype=dt)]
        raise NotImplementedError("Constant attr %s" % list(a))
    if op in ("Add", "Sub", "Mul", "Pow", "Equal"):
        f = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow, "Equal": torch.eq}[op]
        return [f(ins[0], ins[1])]
    if op == "Div":
        if ins[0].is_floating_point():
            return [ins[0] / ins[1]]
        return [torch.div(ins[0], ins[1], rounding_mode="trunc")]
    unary = {"Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Relu": torch.relu,
             "Sin": torch.sin, "Cos": torch.cos, "Sqrt": torch.sqrt, "Exp": torch.exp,
             "Neg": torch.neg, "Identity": lambda v: v}
    if op in unary:
        return [unary[op](x)]
    if op == "HardSigmoid":
        return [torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)]
    if op == "HardSwish":
        return [x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)]
    if op == "Clip":
        lo = ins[1] if len(ins) > 1 and ins[1] is not None else None
        hi = ins[2] if len(ins) > 2 and ins[2] is not None else None
        if "min" in a:  # opset < 11: attributes
            lo = torch.tensor(a["min"])
        if "max" in a:
            hi = torch.tensor(a["max"])
        return [torch.clamp(x, min=None if lo is None else lo.item(), max=None if hi is None else hi.item())]
    if op == "Where":
        return [torch.where(ins[0], ins[1], ins[2])]
    if op == "Cast":
        return [x.to(_ONNX2TORCH[a["to"]])]
    if op == "Shape":
        s = list(x.shape)[a.get("start", 0):a.get("end", None)]
        return [torch.tensor(s, dtype=torch.int64)]
    if op == "ConstantOfShape":
        val = _t(numpy_helper.to_array(a["value"])) if "value" in a else torch.zeros(1)
        return [val.reshape(1).expand(*_ints(x)).clone()]
    if op == "Gather":
        axis = a.get("axis", 0) % x.dim()
        idx = ins[1].long()
        idx = torch.where(idx < 0, idx + x.shape[axis], idx)
        out = torch.index_select(x, axis, idx.reshape(-1))
        return [out.reshape(list(x.shape[:axis]) + list(idx.shape) + list(x.shape[axis + 1:]))]
    if op == "Unsqueeze":
        axes = _ints(ins[1]) if len(ins) > 1 else a["axes"]
        rank = x.dim() + len(axes)
        out = x
        for ax in sorted(ax % rank for ax in axes):
            out = out.unsqueeze(ax)
        return [out]
    if op == "Squeeze":
        axes = _ints(ins[1]) if len(ins) > 1 else a.get("axes")
        if axes is None:
            return [x.squeeze()]
        out = x
        for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
            out = out.squeeze(ax)
        return [out]
    if op == "Concat":
        return [torch.cat(ins, dim=a["axis"])]
    if op == "Reshape":
        shape = _ints(ins[1])
        if not a.get("allowzero", 0):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "Flatten":
        axis = a.get("axis", 1) % max(1, x.dim())
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    if op == "Transpose":
        return [x.permute(*a.get("perm", list(reversed(range(x.dim())))))]
    if op == "Expand":
        shape = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(ins[1])))
        return [x.expand(shape)]
    if op == "Slice":
        if len(ins) == 1:  # opset < 10: attributes
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts, ends = _ints(ins[1]), _ints(ins[2])
            axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
            steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        axes = [ax % x.dim() for ax in axes]
        idx = [slice(None)] * x.dim()
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            if sp <= 0:
                raise NotImplementedError("Slice with step %d" % sp)
            dim = x.shape[ax]
            st = max(0, min(dim, st + dim if st < 0 else st))
            en = max(0, min(dim, en + dim if en < 0 else en))
            idx[ax] = slice(st, en, sp)
        return [x[tuple(idx)]]
    if op == "Split":
        axis = a.get("axis", 0)
        if len(ins) > 1 and ins[1] is not None:
            sizes = _ints(ins[1])
        elif "split" in a:  # opset < 13
            sizes = list(a["split"])
        else:
            n = a.get("num_outputs")
            sizes = [x.shape[axis] // n] * n if n else None
        return list(torch.split(x, sizes, dim=axis))
    if op == "MatMul":
        return [torch.matmul(ins[0], ins[1])]
    if op == "Gemm":
        A = ins[0].t() if a.get("transA", 0) else ins[0]
        B = ins[1].t() if a.get("transB", 0) else ins[1]
        y = a.get("alpha", 1.0) * (A @ B)
        if len(ins) > 2 and ins[2] is not None:
            y = y + a.get("beta", 1.0) * ins[2]
        return [y]
    if op == "Softmax":
        if _INTERP_OPSET[0] >= 13:
            return [torch.softmax(x, dim=a.get("axis", -1))]
        axis = a.get("axis", 1) % x.dim()  # opset < 13: coerced to 2-D at `axis`
        flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
        return [torch.softmax(flat, dim=1).reshape(x.shape)]
    if op == "Conv":
        w = ins[1]
        b = ins[2] if len(ins) > 2 else None
        nsp = w.dim() - 2
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise NotImplementedError("Conv auto_pad")
        x, pad = _conv_pads(x, a.get("pads", [0] * 2 * nsp))
        return [F.conv2d(x, w, b, stride=a.get("strides", [1] * nsp), padding=pad,
                         dilation=a.get("dilations", [1] * nsp), groups=a.get("group", 1))]
    if op == "MaxPool":
        k = a["kernel_shape"]
        x, pad = _conv_pads(x, a.get("pads", [0] * 2 * len(k)), value=-float("inf"))
        return [F.max_pool2d(x, k, stride=a.get("strides", [1] * len(k)), padding=pad,
                             dilation=a.get("dilations", [1] * len(k)), ceil_mode=bool(a.get("ceil_mode", 0)))]
    if op == "GlobalAveragePool":
        return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]
    if op == "BatchNormalization":
        sc, bi, mean, var = ins[1:5]
        shp = [1, -1] + [1] * (x.dim() - 2)
        eps = a.get("epsilon", 1e-5)
        return [(x - mean.reshape(shp)) / torch.sqrt(var.reshape(shp) + eps) * sc.reshape(shp) + bi.reshape(shp)]
    if op == "InstanceNormalization":
        dims = tuple(range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, unbiased=False)
        shp = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean) / torch.sqrt(var + a.get("epsilon", 1e-5))
        return [y * ins[1].reshape(shp) + ins[2].reshape(shp)]
    if op == "LayerNormalization":
        axis = a.get("axis", -1) % x.dim()
        dims = tuple(range(axis, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, unbiased=False)
        y = (x - mean) / torch.sqrt(var + a.get("epsilon", 1e-5)) * ins[1]
        if len(ins) > 2 and ins[2] is not None:
            y = y + ins[2]
        return [y]
    if op == "Resize":
        mode = a.get("mode", b"nearest")
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        nm = a.get("nearest_mode", b"round_prefer_floor")
        if (mode, ctm, nm) != (b"nearest", b"asymmetric", b"floor"):
            raise NotImplementedError("Resize %s/%s/%s" % (mode, ctm, nm))
        scales = ins[2] if len(ins) > 2 and ins[2] is not None and ins[2].numel() else None
        if scales is not None:
            sc = [float(v) for v in scales.tolist()]
            out_shape = [int(math.floor(d * s)) for d, s in zip(x.shape, sc)]
        else:
            out_shape = _ints(ins[3])
            sc = [o / d for o, d in zip(out_shape, x.shape)]
        y = x
        for ax, (o, s) in enumerate(zip(out_shape, sc)):
            if o == x.shape[ax] and s == 1.0:
                continue
            idx = torch.clamp(torch.floor(torch.arange(o, dtype=torch.float64) / s).long(), max=x.shape[ax] - 1)
            y = torch.index_select(y, ax, idx)
        return [y]
    if op in ("Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or"):
        f = {"Less": torch.lt, "LessOrEqual": torch.le, "Greater": torch.gt, "GreaterOrEqual": torch.ge,
             "And": torch.logical_and, "Or": torch.logical_or}[op]
        return [f(ins[0], ins[1])]
    if op == "Not":
        return [torch.logical_not(x)]
    if op in ("Max", "Min"):
        out = ins[0]
        for v in ins[1:]:
            out = torch.maximum(out, v) if op == "Max" else torch.minimum(out, v)
        return [out]
    if op == "Range":
        return [torch.arange(ins[0].item(), ins[1].item(), ins[2].item(), dtype=ins[0].dtype)]
    if op == "NonZero":
        return [torch.stack(torch.nonzero(x, as_tuple=True)).to(torch.int64)]
    if op == "CumSum":
        out = torch.cumsum(x, dim=int(ins[1].item()))
        if a.get("exclusive", 0) or a.get("reverse", 0):
            raise NotImplementedError("CumSum exclusive/reverse")
        return [out.to(x.dtype)]
    if op == "ReduceMean":
        axes = a.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = _ints(ins[1])
        axes = list(range(x.dim())) if not axes else [ax % x.dim() for ax in axes]
        return [x.mean(dim=tuple(axes), keepdim=bool(a.get("keepdims", 1)))]
    if op == "AveragePool":
        k = a["kernel_shape"]
        pads = a.get("pads", [0] * 2 * len(k))
        if any(pads):
            if not a.get("count_include_pad", 0) or pads[:len(k)] != pads[len(k):]:
                raise NotImplementedError("AveragePool pads %s" % pads)
        return [F.avg_pool2d(x, k, stride=a.get("strides", [1] * len(k)), padding=pads[:len(k)],
                             ceil_mode=bool(a.get("ceil_mode", 0)),
                             count_include_pad=bool(a.get("count_include_pad", 0)))]
    if op == "Pad":
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = _ints(ins[1]) if len(ins) > 1 else list(a["pads"])  # attribute before opset 11
        if len(ins) > 3 and ins[3] is not None:
            raise NotImplementedError("Pad axes")
        value = float(ins[2].item()) if len(ins) > 2 and ins[2] is not None else a.get("value", 0.0)
        n = x.dim()
        torch_pad = []
        for ax in reversed(range(n)):
            torch_pad += [pads[ax], pads[ax + n]]
        if mode == "constant":
            return [F.pad(x, torch_pad, value=value)]
        return [F.pad(x, torch_pad[:2 * (n - 2)], mode={"reflect": "reflect", "edge": "replicate"}[mode])]
    if op == "LSTM":
        return _run_rnn("LSTM", a, ins)
    if op == "GRU":
        return _run_rnn("GRU", a, ins)
    raise NotImplementedError("reference interpreter: op %s" % op)


def _run_rnn(op, a, ins):
    """ONNX LSTM (gates i,o,f,c) / GRU (gates z,r,h), layout 0, default activations."""
    x, W, R = ins[0], ins[1], ins[2]
    B = ins[3] if len(ins) > 3 and ins[3] is not None else None
    if len(ins) > 4 and ins[4] is not None:
        raise NotImplementedError("%s sequence_lens" % op)
    if a.get("layout", 0) != 0 or "activations" in a or a.get("clip") is not None or a.get("input_forget", 0):
        raise NotImplementedError("%s attributes %s" % (op, sorted(a)))
    hs = a["hidden_size"]
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    seq, batch = x.shape[0], x.shape[1]
    h0 = ins[5] if len(ins) > 5 and ins[5] is not None else torch.zeros(dirs, batch, hs)
    c0 = ins[6] if op == "LSTM" and len(ins) > 6 and ins[6] is not None else torch.zeros(dirs, batch, hs)
    ngates = 4 if op == "LSTM" else 3
    ys, yh, yc = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        w, r = W[d], R[d]
        wb = B[d, :ngates * hs] if B is not None else torch.zeros(ngates * hs)
        rb = B[d, ngates * hs:] if B is not None else torch.zeros(ngates * hs)
        h, c = h0[d], c0[d]
        out = [None] * seq
        steps = range(seq - 1, -1, -1) if reverse else range(seq)
        for t in steps:
            xt = x[t] @ w.t() + wb
            if op == "LSTM":
                g = xt + h @ r.t() + rb
                i, o, f, cc = g.split(hs, dim=-1)
                i, o, f, cc = torch.sigmoid(i), torch.sigmoid(o), torch.sigmoid(f), torch.tanh(cc)
                c = f * c + i * cc
                h = o * torch.tanh(c)
            else:
                xz, xr, xh = xt.split(hs, dim=-1)
                rz, rr, rh = r.split(hs, dim=0)
                bz, br, bh = rb.split(hs)
                z = torch.sigmoid(xz + h @ rz.t() + bz)
                rg = torch.sigmoid(xr + h @ rr.t() + br)
                if a.get("linear_before_reset", 0):
                    ht = torch.tanh(xh + rg * (h @ rh.t() + bh))
                else:
                    ht = torch.tanh(xh + (rg * h) @ rh.t() + bh)
                h = (1 - z) * ht + z * h
            out[t] = h
        ys.append(torch.stack(out))
        yh.append(h)
        yc.append(c)
    Y = torch.stack(ys, dim=1)  # [seq, dirs, batch, hidden]
    res = [Y, torch.stack(yh)]
    if op == "LSTM":
        res.append(torch.stack(yc))
    return res


_INTERP_OPSET = [17]  # default-domain opset of the graph being interpreted


def _initializer(init, base_dir):
    if base_dir is not None and onnx.external_data_helper.uses_external_data(init):
        # read into a copy so that the model does not keep the bytes
        t = onnx.TensorProto()
        t.CopyFrom(init)
        return _t(numpy_helper.to_array(t, base_dir))
    return _t(numpy_helper.to_array(init))


def run_onnx_reference(model, feeds, base_dir=None):
    """Evaluate `model` (onnx.ModelProto) on numpy `feeds`; returns list of numpy outputs.
    For a model loaded without its external data, `base_dir` is the folder to
    read it from.  Each value is dropped after the last node that reads it (a
    UNet at SD size would otherwise keep every intermediate)."""
    _INTERP_OPSET[0] = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [17])
    nodes = model.graph.node
    outputs = [o.name for o in model.graph.output]
    last_use = {}
    for idx, node in enumerate(nodes):
        for n in node.input:
            last_use[n] = idx
    for n in outputs:
        last_use[n] = len(nodes)
    env = {i.name: _initializer(i, base_dir) for i in model.graph.initializer}
    env[""] = None
    for k, v in feeds.items():
        env[k] = _t(v)
    with torch.no_grad():
        for idx, node in enumerate(nodes):
            if node.domain not in ("", "ai.onnx"):
                raise NotImplementedError("domain %s" % node.domain)
            outs = _run_node(node.op_type, _attrs(node), [env[n] for n in node.input])
            for name, val in zip(node.output, outs):
                env[name] = val
            del outs
            for n in set(node.input) | set(node.output):
                if n and last_use.get(n, -1) <= idx:
                    env.pop(n, None)
    return [env[n].numpy() for n in outputs]


# ----------------------------------------------------------------------------
# --verify
# ----------------------------------------------------------------------------


def _value_info_sig(vi):
    t = vi.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
    return t.elem_type, dims


def verify_dir(root):
    model_dirs = sorted(d for d in glob.glob(os.path.join(root, "*")) if os.path.isfile(os.path.join(d, "model.onnx")))
    # one level of grouping folders too, e.g. models/old_opsets/<name>/
    model_dirs += sorted(d for d in glob.glob(os.path.join(root, "*", "*"))
                         if os.path.isfile(os.path.join(d, "model.onnx"))
                         and not os.path.isfile(os.path.join(os.path.dirname(d), "model.onnx")))
    if not model_dirs:
        print("no <model>/model.onnx under %s" % root)
        return False
    ok = True
    for mdir in model_dirs:
        errors = []
        # The weights are not needed here (and a model over 2 GB keeps them
        # in external data, which check_model can only follow from the path).
        m = onnx.load(os.path.join(mdir, "model.onnx"), load_external_data=False)
        try:
            onnx.checker.check_model(os.path.join(mdir, "model.onnx"))
        except Exception as exc:  # noqa: BLE001
            errors.append("check_model: %s" % exc)
        inits = {i.name for i in m.graph.initializer}
        ins = [vi for vi in m.graph.input if vi.name not in inits]
        outs = list(m.graph.output)
        sets = sorted(glob.glob(os.path.join(mdir, "test_data_set_*")))
        if not sets:
            errors.append("no test_data_set_*")
        for sdir in sets:
            sym = {}
            for kind, vis in (("input", ins), ("output", outs)):
                files = sorted(glob.glob(os.path.join(sdir, "%s_*.pb" % kind)),
                               key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
                if len(files) != len(vis):
                    errors.append("%s: %d %s files, model has %d" % (sdir, len(files), kind, len(vis)))
                for f, vi in zip(files, vis):
                    tp = onnx.TensorProto()
                    with open(f, "rb") as fh:
                        tp.ParseFromString(fh.read())
                    arr = numpy_helper.to_array(tp)
                    elem, dims = _value_info_sig(vi)
                    where = "%s/%s" % (os.path.basename(sdir), os.path.basename(f))
                    if tp.name != vi.name:
                        errors.append("%s: name %r != %r" % (where, tp.name, vi.name))
                    if tp.data_type != elem:
                        errors.append("%s: dtype %d != %d" % (where, tp.data_type, elem))
                    if len(arr.shape) != len(dims):
                        errors.append("%s: rank %d != %d" % (where, len(arr.shape), len(dims)))
                        continue
                    for ax, (got, want) in enumerate(zip(arr.shape, dims)):
                        if isinstance(want, int) and want > 0 and got != want:
                            errors.append("%s: dim %d is %d, expected %d" % (where, ax, got, want))
                        elif isinstance(want, str):
                            if sym.setdefault(want, got) != got:
                                errors.append("%s: dim %d (%s) is %d, other tensors say %d"
                                              % (where, ax, want, got, sym[want]))
                    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                        errors.append("%s: non-finite values" % where)
        status = "OK" if not errors else "FAIL"
        print("%-28s %s  (%d data sets)" % (os.path.relpath(mdir, root), status, len(sets)))
        for e in errors:
            print("    " + e)
        ok &= not errors
    return ok


def expand_names(names):
    """Expand group names; check model names (`<model>_opset<N>` is accepted for any model)."""
    known = set(SMALL_MODELS + LARGE_MODELS + HUGE_MODELS)
    out = []
    for n in names:
        if n in GROUPS:
            out += GROUPS[n]
            continue
        base, opset = split_opset_name(n)
        if base not in known or (opset is not None and not 7 <= opset <= 17):
            raise SystemExit("unknown model %r; models: %s; groups: %s; or <model>_opset<N> (N in 7..17)"
                             % (n, " ".join(SMALL_MODELS + LARGE_MODELS + HUGE_MODELS), " ".join(GROUPS)))
        out.append(n)
    return list(collections.OrderedDict.fromkeys(out))


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Generate Tandem's ONNX test models (random weights) with reference test data "
                    "in ONNX backend test-data layout, or verify an existing folder.",
        epilog="Run with /usr/bin/python3 (needs torch 1.13 + onnx 1.12; torchvision for the "
               "torchvision families). Small (committed) models: %s, plus %s/: %s. "
               "Large (--size large, on demand): %s. Huge (on demand by name or group huge; "
               "weights in external data): %s. Groups for --only: %s."
               % (", ".join(SMALL_MODELS), OLD_OPSET_DIR, ", ".join(OLD_OPSET_MODELS),
                  ", ".join(LARGE_MODELS), ", ".join(HUGE_MODELS), ", ".join(GROUPS)))
    p.add_argument("--out", default="models", help="output folder (default: models)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="generate only these models or groups (any name, regardless of --size); "
                        "<model>_opset<N> exports <model> at opset N into OUT/%s/" % OLD_OPSET_DIR)
    p.add_argument("--size", choices=["small", "large"], default="small",
                   help="small: the committed models (incl. %s/); large: the on-demand set "
                        "(not committed)" % OLD_OPSET_DIR)
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset for names without an _opset<N> suffix (default 17)")
    p.add_argument("--no-onnx-check", action="store_true",
                   help="skip running each exported graph through the built-in reference "
                        "interpreter and comparing with the torch outputs")
    p.add_argument("--verify", metavar="DIR",
                   help="do not generate; re-load DIR/*/test_data_set_* (and DIR/%s/*/) and check "
                        "names/dtypes/shapes against each model.onnx" % OLD_OPSET_DIR)
    p.add_argument("--list", metavar="GROUP_OR_NAME", nargs="+",
                   help="print the model names a group (or name list) expands to, one per line, and exit")
    args = p.parse_args(argv)

    if args.list:
        print("\n".join(expand_names(args.list)))
        return 0
    if args.verify:
        return 0 if verify_dir(args.verify) else 1

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    names = expand_names(args.only or [args.size if args.size == "large" else "ci"])
    os.makedirs(args.out, exist_ok=True)
    ok = True
    failed = []
    for n in names:
        try:
            good = generate(n, args.out, args.opset, check_onnx=not args.no_onnx_check)
        except Exception as exc:  # noqa: BLE001  (export failures: report, go on with the rest)
            print("  ERROR: %s: %s: %s" % (n, type(exc).__name__, exc))
            good = False
        ok &= good
        if not good:
            failed.append(n)
    print()
    ok_v = verify_dir(args.out)
    if failed:
        print("generation checks failed for: %s" % " ".join(failed))
    return 0 if (ok and ok_v) else 1


if __name__ == "__main__":
    sys.exit(main())
