"""Flax modules of jaxfp; they know nothing of data or losses."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxfp import schema as schema_lib
from jaxfp.models.fen import FingerprintEstimator
from jaxfp.models import parsing
from jaxfp.models.parsing import ParsingNetwork


class FingerprintParser(nn.Module):
  """FEN followed by the PN: image [N, H, W, 3] -> fingerprint and logits.

  With `use_fen=False` (the "no FEN" ablation) the PN reads the image itself,
  which is then also what is returned as the fingerprint.
  """
  schema: schema_lib.Schema
  fen_depth: int = 17
  fen_width: int = 64
  use_fen: bool = True
  dropout_rate: float = 0.5
  pn_channels: tuple[int, ...] = parsing.CHANNELS
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool):
    if self.use_fen:
      fingerprint = FingerprintEstimator(
          self.fen_depth, self.fen_width, dtype=self.dtype,
          axis_name=self.axis_name, name='fen')(images, train=train)
    else:
      fingerprint = images
    outputs = ParsingNetwork(self.schema, self.dropout_rate, self.pn_channels,
                             dtype=self.dtype, name='pn')(fingerprint, train=train)
    return {'fingerprint': fingerprint, **outputs}


__all__ = ['FingerprintEstimator', 'ParsingNetwork', 'FingerprintParser']
