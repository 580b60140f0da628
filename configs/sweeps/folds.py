"""Leave-out cross-validation: the GMs dealt into four folds (the paper used
four test sets); each run holds one fold out and trains on the rest.

The table ends with the mean ± std of every metric over the folds, then
the folds pooled into one table where every GM is tested once (each fold's
held-out predictions.npz, scored together; jaxfp.tools.sweep). GMs of one
architecture always share a fold.
"""

from configs import sweeps

NUM_FOLDS = 4
AVERAGE_RUNS = True


def get_config(preset=None):
  config = sweeps.base_config(preset)
  config.data.num_folds = NUM_FOLDS
  return config


def get_sweep(preset=None):
  del preset
  return [(f'fold_{k}', {'data.fold': k}) for k in range(NUM_FOLDS)]
