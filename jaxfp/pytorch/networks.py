"""The published PyTorch networks, as references for conversion and parity.

Module attributes are laid out so that `state_dict()` keys and shapes are
those of the published checkpoints (docs/published.md, "Checkpoint layout");
forwards take NCHW float32 and return what the published forwards return
after their sigmoids.
"""

from __future__ import annotations

import torch
from torch import nn

from jaxfp.core import schema as schema_lib
from jaxfp.core import spectrum as spectrum_lib

PARSING_CHANNELS = (32, 64, 128, 256, 512)
DETECTION_CHANNELS = (32, 64, 128, 256, 512)
ATTRIBUTION_CHANNELS = (32, 64)
HIDDEN = 512
# Published parsing heads, in the order of PUBLISHED's schema columns.
CONTINUOUS_OUTPUTS = len(schema_lib.PUBLISHED.continuous)
DISCRETE_OUTPUTS = schema_lib.PUBLISHED.num_classes
NUM_COARSE = len(schema_lib.PUBLISHED.coarse)
NUM_FINE = len(schema_lib.PUBLISHED.fine)
FINE_TO_COARSE = schema_lib.PUBLISHED.fine_to_coarse


def gray(fingerprint: torch.Tensor) -> torch.Tensor:
  """[N, 3, H, W] -> [N, H, W], with the published luma weights."""
  r, g, b = spectrum_lib.GRAY_WEIGHTS
  return r * fingerprint[:, 0] + g * fingerprint[:, 1] + b * fingerprint[:, 2]


def spectrum(fingerprint: torch.Tensor) -> torch.Tensor:
  """Magnitude spectrum of the gray fingerprint, zero frequency centred.

  The published code shifts by rolling each axis by size // 2, which is
  fftshift for the even sizes it uses (64, 128).
  """
  freq = torch.fft.fftshift(torch.fft.fft2(gray(fingerprint)), dim=(-2, -1))
  return freq.abs()


class FEN(nn.Module):
  """DnCNN-style fingerprint estimator; the output is the fingerprint."""

  def __init__(self, depth: int = 17, width: int = 64):
    super().__init__()
    if depth < 2:
      raise ValueError(f'FEN depth must be at least 2, got {depth}')
    blocks = [nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())]
    for _ in range(depth - 2):
      blocks.append(nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                  nn.BatchNorm2d(width), nn.ReLU()))
    blocks.append(nn.Conv2d(width, 3, 3, padding=1))
    self.layers = nn.Sequential(*blocks)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    return self.layers(images)


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
  """conv (padding 2) + ReLU + maxpool 2: keys `.0.weight`, `.0.bias`."""
  return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=2), nn.ReLU(),
                       nn.MaxPool2d(2))


class _Head(nn.Module):
  """layer1..layerL conv blocks and the dropout before the dense layers."""

  def __init__(self, in_channels, channels, kernels, image_size):
    super().__init__()
    widths = (in_channels,) + tuple(channels)
    for i, k in enumerate(kernels):
      setattr(self, f'layer{i + 1}', _conv_block(widths[i], widths[i + 1], k))
    self.num_blocks = len(kernels)
    self.dropout = nn.Dropout(0.5)
    with torch.no_grad():  # The width of the first dense layer's input.
      self.flat_size = self.blocks(
          torch.zeros(1, in_channels, image_size, image_size)).numel()

  def blocks(self, x: torch.Tensor) -> torch.Tensor:
    for i in range(self.num_blocks):
      x = getattr(self, f'layer{i + 1}')(x)
    return x


class _Classifier(_Head):
  """The conv blocks, dropout, fc1 + ReLU, fc2 (+ sigmoid)."""

  def __init__(self, in_channels, channels, kernels, image_size, num_classes,
               hidden):
    super().__init__(in_channels, channels, kernels, image_size)
    self.fc1 = nn.Linear(self.flat_size, hidden)
    self.fc2 = nn.Linear(hidden, num_classes)

  def logits(self, x: torch.Tensor) -> torch.Tensor:
    x = self.blocks(x).flatten(1)
    return self.fc2(torch.relu(self.fc1(self.dropout(x))))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(self.logits(x))


class DetectionHead(_Classifier):
  """Fingerprint [N, 3, 128, 128] -> sigmoid outputs [N, 2]."""

  def __init__(self, channels=DETECTION_CHANNELS, hidden=HIDDEN,
               num_classes=2, image_size=128):
    kernels = (5,) * (len(channels) - 1) + (3,)
    super().__init__(3, channels, kernels, image_size, num_classes, hidden)


class AttributionHead(_Classifier):
  """Spectrum [N, 1, 128, 128] -> sigmoid outputs [N, 5]."""

  def __init__(self, channels=ATTRIBUTION_CHANNELS, hidden=HIDDEN,
               num_classes=5, image_size=128):
    super().__init__(1, channels, (5,) * len(channels), image_size,
                     num_classes, hidden)


class ParsingHead(_Head):
  """Fingerprint [N, 3, 64, 64] -> the 18 published sigmoid outputs.

  forward returns, in the published order: continuous [N, 9]; six discrete
  [N, k]; three coarse [N, 2]; eight fine [N, 2], each multiplied by column 1
  of its coarse group's output (fine 1-4 by coarse 1, 5-7 by 2, 8 by 3).
  fc4..fc7 exist, as in the published network, but feed nothing.
  """

  def __init__(self, channels=PARSING_CHANNELS, image_size=64):
    super().__init__(3, channels, (3,) * len(channels), image_size)
    self.fc1 = nn.Linear(self.flat_size, 512)
    self.fc2 = nn.Linear(512, 256)
    self.fc3 = nn.Linear(256, 64)
    self.fc4 = nn.Linear(512, 256)
    self.fc5 = nn.Linear(256, 64)
    self.fc6 = nn.Linear(512, 256)
    self.fc7 = nn.Linear(256, 64)
    self.head_names = []  # fc8_*, fc9_*, fc10_*, in the published order.
    for group, sizes in (('fc8', (CONTINUOUS_OUTPUTS,) + DISCRETE_OUTPUTS),
                         ('fc9', (2,) * NUM_COARSE),
                         ('fc10', (2,) * NUM_FINE)):
      for i, k in enumerate(sizes):
        self.head_names.append(f'{group}_{i + 1}')
        setattr(self, self.head_names[-1], nn.Linear(64, k))

  def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every head's output before its sigmoid, by layer name."""
    x = self.dropout(self.blocks(x).flatten(1))
    x = torch.relu(self.fc1(x))
    x = torch.relu(self.fc3(torch.relu(self.fc2(x))))
    return {name: getattr(self, name)(x) for name in self.head_names}

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outputs = [torch.sigmoid(z) for z in self.logits(x).values()]
    architecture = outputs[:1 + len(DISCRETE_OUTPUTS)]
    coarse = outputs[len(architecture):len(architecture) + NUM_COARSE]
    fine = [p * coarse[g][:, 1:2] for p, g in zip(
        outputs[len(architecture) + NUM_COARSE:], FINE_TO_COARSE)]
    return tuple(architecture + coarse + fine)


# The published head of each task.
HEADS = {'parsing': ParsingHead, 'detection': DetectionHead,
         'attribution': AttributionHead}


def published_checkpoint(fen: FEN, head: nn.Module, task: str) -> dict:
  """The dict the published training scripts pass to torch.save.

  Adam (lr 1e-4) states of both networks come along as `optimizer_1` and
  `optimizer_2`, as published.
  """
  if task not in HEADS:
    raise ValueError(f'task must be one of {tuple(HEADS)}, got {task!r}')
  if not isinstance(head, HEADS[task]):
    raise ValueError(f'the {task} task needs a {HEADS[task].__name__}, '
                     f'got a {type(head).__name__}')
  return {
      'state_dict_cnn': fen.state_dict(),
      'optimizer_1': torch.optim.Adam(fen.parameters(), lr=1e-4).state_dict(),
      'state_dict_class': head.state_dict(),
      'optimizer_2': torch.optim.Adam(head.parameters(), lr=1e-4).state_dict(),
  }
