"""The published parsing network's loss-type outputs, which both the
published-style models and the published loss quirk reproduce.

Every published head ends in a sigmoid on each of its two units, and each
fine loss type's two outputs are multiplied by unit 1 (used) of its coarse
group's output.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def sigmoid_loss_heads(coarse_logits: jax.Array, fine_logits: jax.Array,
                       fine_to_coarse: Sequence[int], *, gated: bool = True
                       ) -> tuple[jax.Array, jax.Array]:
  """(coarse [N, K, 2], fine [N, F, 2]) published sigmoid outputs.

  With `gated` (the published hierarchy) each fine pair is multiplied by
  sigmoid(coarse)[:, g, 1] of its group g = fine_to_coarse[f].
  """
  coarse = jax.nn.sigmoid(coarse_logits)
  fine = jax.nn.sigmoid(fine_logits)
  if gated:
    gate = jnp.take(coarse[..., 1], np.asarray(fine_to_coarse, np.int32),
                    axis=1)
    fine = fine * gate[..., None]
  return coarse, fine
