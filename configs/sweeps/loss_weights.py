"""Loss weights: the parsing heads' weight, and all fingerprint constraints
scaled together, around the published values (head weight 10; constraint
weights 0.1, 0.05, 0.001, 1)."""

from configs import sweeps

HEAD_WEIGHTS = (1.0, 10.0, 100.0)
CONSTRAINT_SCALES = (0.1, 10.0)


def get_config(preset=None):
  # The CPU preset has no FEN; this sweep varies it.
  return sweeps.base_config(preset, default='cpu_fen')


def get_sweep(preset=None):
  base = get_config(preset)
  published = dict(base.loss.fingerprint_weights)
  runs = [(f'head_weight_{w:g}', {'loss.head_weight': w})
          for w in HEAD_WEIGHTS]
  for scale in CONSTRAINT_SCALES:
    runs.append((f'constraints_x{scale:g}', {
        f'loss.fingerprint_weights.{term}': float(f'{weight * scale:.6g}')
        for term, weight in published.items()}))
  return runs
