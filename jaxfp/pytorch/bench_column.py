"""The benchmark's PyTorch column: the published recipe, eager, float32.

The same networks (`jaxfp.pytorch.networks`), losses and batch as a jaxfp
row, written the way the published training scripts run them (the recipe:
docs/performance.md, "Method"). Only `jaxfp.bench` imports this module, and
only when torch is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image
import torch
from torch.nn import functional as F

from jaxfp.core import normalization
from jaxfp.pytorch import networks


def version() -> str:
  return torch.__version__


def device_for(platform: str):
  """The torch device matching a jax platform ('gpu' -> cuda, else cpu)."""
  if platform == 'gpu':
    if not torch.cuda.is_available():
      raise RuntimeError('jax runs on a GPU but torch sees no CUDA device; '
                         'pass --torch=off or install a CUDA build of torch')
    return torch.device('cuda')
  return torch.device('cpu')


def fingerprint_losses(fingerprint, weights: dict[str, float], radius: int):
  """Weighted sum of the four published constraints, [N, 3, H, W] input."""
  gray = networks.gray(fingerprint)
  spectrum = networks.spectrum(fingerprint)
  h, w = spectrum.shape[-2:]
  rows = slice(h // 2 - radius, h // 2 + radius + 1)
  cols = slice(w // 2 - radius, w // 2 + radius + 1)
  keep = torch.ones((h, w), device=spectrum.device)
  keep[rows, cols] = 0
  terms = {
      'magnitude': gray.pow(2).mean(),
      'spectrum': spectrum[:, rows, cols].pow(2).mean(),
      # One max over the whole batch, as published.
      'repetitive': -(spectrum * keep).max(),
      'symmetry': (spectrum - spectrum.transpose(-1, -2)).pow(2).mean(),
  }
  return sum(weights[k] * v for k, v in terms.items())


def parsing_loss(outputs, labels: dict[str, Any], class_weights: dict,
                 head_weight: float):
  """10 x (MSE + weighted CE of every head) on ParsingHead's outputs.

  The published quirk: torch's CrossEntropyLoss takes the sigmoid outputs
  as logits.
  """
  continuous, *rest = outputs
  groups = {'discrete': rest[:6], 'coarse': rest[6:9], 'fine': rest[9:]}
  total = F.mse_loss(continuous, labels['continuous'])
  for group, group_outputs in groups.items():
    for j, out in enumerate(group_outputs):
      total = total + F.cross_entropy(out, labels[group][:, j],
                                      weight=class_weights[group][j])
  return head_weight * total


def _networks(config, device):
  """FEN and head of `config` (published sizes unless the config narrows)."""
  m = config.model
  size = config.data.image_size
  fen = networks.FEN(m.fen_depth, m.fen_width)
  if config.task == 'parsing':
    head = networks.ParsingHead(channels=tuple(m.pn_channels),
                                image_size=size)
  else:
    channels = tuple(m.head_channels) or networks.DETECTION_CHANNELS
    head = networks.DetectionHead(channels=channels, image_size=size)
  return fen.to(device), head.to(device)


def _tensors(spec: dict, device) -> dict[str, Any]:
  """The jaxfp batch as torch tensors: images NCHW, labels, class weights."""
  batch = spec['batch']
  out = {'images': torch.from_numpy(np.ascontiguousarray(
      batch['image'].transpose(0, 3, 1, 2))).to(device)}
  if spec['config'].task == 'parsing':
    out['labels'] = {
        'continuous': torch.from_numpy(batch['continuous']).to(device),
        **{k: torch.from_numpy(batch[k].astype(np.int64)).to(device)
           for k in ('discrete', 'coarse', 'fine')}}
    weights = spec['task'].class_weights
    out['class_weights'] = {
        k: [torch.as_tensor(np.asarray(w, np.float32), device=device)
            for w in weights[k]] for k in ('discrete', 'coarse', 'fine')}
  else:
    out['labels'] = torch.from_numpy(batch['label'].astype(np.int64)).to(
        device)
  return out


def make_step(spec: dict, platform: str, *, train: bool,
              threads: int = 0) -> tuple[Callable[[], None],
                                         Callable[[], None]]:
  """(step, sync) of one PyTorch train step or forward pass for `spec`.

  Args:
    spec: a jaxfp row's torch_spec: {'config', 'batch', 'task'}.
    platform: jax's platform of the row ('cpu' or 'gpu').
    train: a train step (Adam) or an inference forward pass.
    threads: torch.set_num_threads (0 = torch's default).
  """
  if threads:
    torch.set_num_threads(threads)
  torch.manual_seed(0)
  device = device_for(platform)
  config = spec['config']
  fen, head = _networks(config, device)
  t = _tensors(spec, device)
  images = t['images']
  sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
  if not train:
    fen.eval()
    head.eval()

    def infer():
      with torch.inference_mode():
        head(fen(images))
    return infer, sync

  lr = config.learning_rate
  fen_optimizer = torch.optim.Adam(fen.parameters(), lr=lr)
  head_optimizer = torch.optim.Adam(head.parameters(), lr=lr)
  weights = dict(config.loss.fingerprint_weights)
  radius = config.loss.low_freq_radius

  def train_step():
    fen_optimizer.zero_grad(set_to_none=True)
    head_optimizer.zero_grad(set_to_none=True)
    fingerprint = fen(images)
    outputs = head(fingerprint)
    loss = fingerprint_losses(fingerprint, weights, radius)
    if config.task == 'parsing':
      loss = loss + parsing_loss(outputs, t['labels'], t['class_weights'],
                                 config.loss.head_weight)
    else:
      loss = loss + config.loss.task_weight * F.cross_entropy(
          outputs, t['labels'])
    loss.backward()
    fen_optimizer.step()
    head_optimizer.step()
  return train_step, sync


class FolderImages:
  """The published data path: PIL decode, resize, normalise, per image."""

  def __init__(self, files: list[str], image_size: int, mean: float,
               std: float):
    self.files, self.size, self.mean, self.std = files, image_size, mean, std

  def __len__(self):
    return len(self.files)

  def __getitem__(self, i):
    with Image.open(self.files[i]) as img:
      img = img.convert('RGB').resize((self.size, self.size),
                                      Image.BILINEAR)
      x = normalization.normalize(np.asarray(img, np.float32), self.mean,
                                  self.std)
    return torch.from_numpy(x.transpose(2, 0, 1).copy()), 0


def image_loader(root: str, image_size: int, batch_size: int, workers: int,
                 mean: float, std: float):
  """An endless iterator of DataLoader batches over root/*/*.png."""
  files = sorted(
      os.path.join(dirpath, f) for dirpath, _, names in os.walk(root)
      for f in names if f.endswith('.png'))
  loader = torch.utils.data.DataLoader(
      FolderImages(files, image_size, mean, std), batch_size=batch_size,
      shuffle=True, num_workers=workers, drop_last=True,
      persistent_workers=workers > 0)

  def endless():
    while True:
      yield from loader
  return endless()
