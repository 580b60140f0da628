"""Source embedding: image -> unit vector, close for images of one generator.

`SourceEmbedder` reads fixed summaries of the image (the PN's
`parsing.SideFeatures`: the log spectrum of the high-pass residual or of the
fingerprint, colour statistics), optionally a FEN's fingerprint through the
same summaries, and maps them through an MLP to an L2-normalised embedding.
With `num_sources > 0` it also holds one unit "proxy" vector per training
source and returns the cosine of each image's embedding with each proxy:
what a margin softmax (`jaxfp.losses.embedding`) trains on. The proxies are
training-only; inference reads 'embedding'.

The summaries come first because they are what carries a generator's
traces to unseen generators: on the parsing side they beat the conv PN, and
a conv trunk over 64x64 pixels costs ~10x more per step on a CPU
(docs/embeddings.md).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxfp.core import normalization
from jaxfp.models import parsing
from jaxfp.models.fen import FingerprintEstimator

HIDDEN = (512, 512)
EMBED_DIM = 128


def l2_normalize(x, eps: float = 1e-12):
  """Rows of x scaled to unit length (a zero row stays zero)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class SourceEmbedder(nn.Module):
  """Image [N, H, W, 3] (normalised) -> {'fingerprint', 'embedding',
  'cosines' (with num_sources)}.

  'fingerprint' is the FEN's output with `use_fen`, else the image (the
  trainer shows it); 'embedding' [N, embed_dim] has unit rows; 'cosines'
  [N, num_sources] are the embeddings' cosines with the source proxies.
  """
  embed_dim: int = EMBED_DIM
  hidden: tuple[int, ...] = HIDDEN
  dropout_rate: float = 0.5
  spectrum: str = 'residual'
  spectrum_pool: int = 16
  colour_stats: bool = True
  use_fen: bool = False
  fen_depth: int = 5
  fen_width: int = 16
  num_sources: int = 0
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool):
    if self.spectrum == 'fingerprint' and not self.use_fen:
      raise ValueError("model.spectrum='fingerprint' needs model.use_fen")
    if self.use_fen:
      fingerprint = FingerprintEstimator(
          self.fen_depth, self.fen_width, dtype=self.dtype,
          axis_name=self.axis_name, name='fen')(images, train=train)
    else:
      fingerprint = images
    x = parsing.SideFeatures(
        self.spectrum, self.spectrum_pool, self.colour_stats,
        mean=normalization.MEAN, std=normalization.STD,
        axis_name=self.axis_name, name='side')(images, fingerprint,
                                                train=train)
    if x is None:
      raise ValueError('a source embedding needs input features: set '
                       'model.spectrum or model.colour_stats')
    x = x.astype(self.dtype)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, dtype=self.dtype, name=f'fc_{i}')(x)
      # LayerNorm, not BatchNorm: an embedding must not depend on which
      # other images share its batch at inference.
      x = nn.gelu(nn.LayerNorm(dtype=self.dtype, name=f'norm_{i}')(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    embedding = l2_normalize(
        nn.Dense(self.embed_dim, name='embed')(x).astype(jnp.float32))
    out = {'fingerprint': fingerprint, 'embedding': embedding}
    if self.num_sources:
      proxies = self.param('proxies', nn.initializers.normal(1.0),
                           (self.num_sources, self.embed_dim), jnp.float32)
      out['cosines'] = embedding @ l2_normalize(proxies).T
    return out
