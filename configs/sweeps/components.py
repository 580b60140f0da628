"""Ablation: the FEN and the hierarchical loss-type heads.

'full' is the method; 'no_fen' feeds the image itself to the parsing network
(no fingerprint, so no fingerprint constraints); 'flat' predicts every fine
loss type on its own instead of gating it by its coarse group.
"""

from configs import sweeps


def get_config(preset=None):
  # The CPU preset has no FEN; this sweep varies it.
  return sweeps.base_config(preset, default='cpu_fen')


def get_sweep(preset=None):
  del preset
  return [
      ('full', {}),
      ('no_fen', {'model.use_fen': False}),
      ('flat', {'loss.hierarchical': False}),
  ]
