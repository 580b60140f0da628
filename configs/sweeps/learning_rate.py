"""Learning rate: a grid of roughly factor-3 steps around the preset's rate."""

from configs import sweeps

FACTORS = (0.1, 0.3, 1.0, 3.0)


def get_config(preset=None):
  return sweeps.base_config(preset)


def get_sweep(preset=None):
  rate = get_config(preset).learning_rate
  rates = [float(f'{rate * f:.3g}') for f in FACTORS]
  return [(f'lr_{r:g}', {'learning_rate': r}) for r in rates]
