"""Flax modules of jaxfp; they know nothing of data or losses.

`jaxfp.models.fields` builds them from constructor fields and back.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfp.core import schema as schema_lib
from jaxfp.core import spectrum as spectrum_lib
from jaxfp.models import heads
from jaxfp.models.fen import FingerprintEstimator
from jaxfp.models import parsing_network
from jaxfp.models.heads import AttributionHead
from jaxfp.models.heads import DetectionHead
from jaxfp.models.parsing_network import ParsingNetwork

# The classifier heads, by the name of the task that introduced each; a
# FingerprintClassifier's `task` picks one.
HEADS = {'detection': DetectionHead, 'attribution': AttributionHead}


class FingerprintParser(nn.Module):
  """FEN followed by the PN: image [N, H, W, 3] -> fingerprint and logits.

  With `use_fen=False` (the "no FEN" ablation) the PN reads the image itself,
  which is then also what is returned as the fingerprint. `spectrum`,
  `colour_stats` and `stage_stats` add the PN's side features
  (parsing_network.SideFeatures).

  `pn_members` > 1: that many PNs ('pn_0', ...) with their own
  initialisation and dropout read the same features (a deep ensemble); the
  outputs are their mean logits, and in training also each one's under
  'members' (a leading axis), so that each is trained on its own loss.
  """
  schema: schema_lib.Schema
  fen_depth: int = 17
  fen_width: int = 64
  use_fen: bool = True
  dropout_rate: float = 0.5
  pn_channels: tuple[int, ...] = parsing_network.CHANNELS
  dtype: Any = jnp.float32
  axis_name: str | None = None
  pn_hidden: tuple[int, ...] = parsing_network.HIDDEN
  spectrum: str = ''
  spectrum_pool: int = 16
  colour_stats: bool = False
  stage_stats: bool = False
  pn_members: int = 1

  @nn.compact
  def __call__(self, images, *, train: bool):
    fingerprint, side = parsing_network.fingerprint_and_side(self, images,
                                                             train=train)
    def pn(name):
      return ParsingNetwork(self.schema, self.dropout_rate, self.pn_channels,
                            dtype=self.dtype, hidden=self.pn_hidden,
                            name=name)(fingerprint, train=train, side=side)
    if self.pn_members == 1:
      return {'fingerprint': fingerprint, **pn('pn')}
    members = [pn(f'pn_{i}') for i in range(self.pn_members)]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *members)
    mean = jax.tree_util.tree_map(lambda x: x.mean(axis=0), stacked)
    return {'fingerprint': fingerprint, **mean,
            **({'members': stacked} if train else {})}


class FingerprintClassifier(nn.Module):
  """FEN followed by a detection or attribution head.

  Image [N, H, W, 3] -> {'fingerprint': [N, H, W, 3], 'spectrum': [N, H, W]
  (its magnitude spectrum), 'logits': [N, num_classes]}, all float32.

  The detection head reads the fingerprint (deepfake_detection.py passes
  the FEN's `residual` to its classifier). The attribution head reads the
  magnitude spectrum |fftshift(fft2(gray))| as one channel, with no log or
  scaling: image_attribution.py passes the first output of fen.py's
  DnCNN.forward (that magnitude) unsqueezed to [N, 1, H, W]. Both files are
  in vishal3477/Reverse_Engineering_GMs.
  """
  task: str
  num_classes: int
  fen_depth: int
  fen_width: int = 64
  dropout_rate: float = 0.5
  # Conv widths of the head's blocks; None = the published ones.
  head_channels: tuple[int, ...] | None = None
  dtype: Any = jnp.float32
  axis_name: str | None = None
  # Width of the head's hidden Dense layer (published 512).
  head_hidden: int = heads.HIDDEN

  @nn.compact
  def __call__(self, images, *, train: bool):
    if self.task not in HEADS:
      raise ValueError(f'FingerprintClassifier task must be one of '
                       f'{tuple(HEADS)}, got {self.task!r}')
    fingerprint = FingerprintEstimator(
        self.fen_depth, self.fen_width, dtype=self.dtype,
        axis_name=self.axis_name, name='fen')(images, train=train)
    spectrum = spectrum_lib.magnitude_spectrum(fingerprint)
    kwargs = {} if self.head_channels is None else {
        'channels': tuple(self.head_channels)}
    head = HEADS[self.task](self.num_classes, self.dropout_rate,
                            hidden=self.head_hidden, dtype=self.dtype,
                            name='head', **kwargs)
    head_input = (fingerprint if self.task == 'detection'
                  else spectrum[..., None])
    return {'fingerprint': fingerprint, 'spectrum': spectrum,
            'logits': head(head_input, train=train)}


__all__ = ['AttributionHead', 'DetectionHead', 'FingerprintClassifier',
           'FingerprintEstimator', 'FingerprintParser', 'ParsingNetwork']
