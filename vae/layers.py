"""Layers tuned for speed on CPU: the same parameters and results as the stock PyTorch layers, computed faster.

They hold no science: each is a drop-in for the `torch.nn` layer it subclasses (same state_dict
keys and shapes, same value and gradient to rounding; tests/test_layers.py checks both), chosen
by measurement with oneDNN on 2-core EPYC CPUs (experiments/bench/README.md, layers.py there).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` with its bias added after the convolution instead of inside it.

    Same parameters and result; on CPU, oneDNN's deconvolution computes the bias gradient
    about 80x slower than a sum over (B, H, W) (11 ms against 0.14 ms at batch 128 for the
    lecture decoder's layer, most of its backward); experiments/bench/README.md measures it.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        output_padding = self._output_padding(
            x, output_size, self.stride, self.padding, self.kernel_size, 2, self.dilation
        )
        y = nn.functional.conv_transpose2d(
            x, self.weight, None, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
        # In place: y is this layer's own output, which autograd does not keep; bf16 stays bf16 under autocast.
        return y if self.bias is None else y.add_(self.bias.to(y.dtype).view(1, -1, 1, 1))


class FewChannelsConv2d(nn.Conv2d):
    """`nn.Conv2d` for few output channels (the decoder's last layer), computed as a grouped conv and a sum.

    Same parameters and result: out[o] = sum_c conv(x[c], w[o, c]) + b[o], done as a depthwise
    conv with `out_channels` filters per input channel, then a sum over the input channels.
    oneDNN's kernels are built for many output channels; with one they run this layer (32 -> 1,
    3x3) at a few percent of the machine's rate, and this form is about twice as fast forward and
    backward on CPU (experiments/bench/README.md). Beyond `MAX_OUT_CHANNELS` outputs (a likelihood with
    several maps per pixel, gen_loss=dmol's 30) the depthwise form's C x O intermediate maps cost more than
    they save, and the stock conv runs.
    """

    MAX_OUT_CHANNELS = 3  # an image's channels: the form's use (1 for MNIST, 3 for colour)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups != 1 or self.padding_mode != "zeros" or self.out_channels > self.MAX_OUT_CHANNELS:
            return super().forward(x)
        out_channels, in_channels = self.out_channels, self.in_channels
        # (O, C, kh, kw) -> (C * O, 1, kh, kw): filter c * O + o is w[o, c].
        weight = self.weight.transpose(0, 1).reshape(in_channels * out_channels, 1, *self.kernel_size)
        per_channel = nn.functional.conv2d(x, weight, None, self.stride, self.padding, self.dilation, in_channels)
        batch, _, height, width = per_channel.shape
        y = per_channel.view(batch, in_channels, out_channels, height, width).sum(1)  # (B, O, H, W)
        return y if self.bias is None else y.add_(self.bias.to(y.dtype).view(1, -1, 1, 1))
