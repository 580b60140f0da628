"""Ablation: each fingerprint constraint removed in turn (weight 0).

The paper's ablation of its four FEN constraints: magnitude, spectrum
(low-frequency energy), repetitive (high-frequency peak) and energy
symmetry. 'all' keeps every one at its published weight.
"""

from configs import common
from configs import sweeps


def get_config(preset=None):
  # The CPU preset has no FEN; this sweep varies it.
  return sweeps.base_config(preset, default='cpu_fen')


def get_sweep(preset=None):
  del preset  # Same runs for every preset.
  return [('all', {})] + [
      (f'no_{term}', {f'loss.fingerprint_weights.{term}': 0.0})
      for term in common.PUBLISHED_FINGERPRINT_WEIGHTS['parsing']]
