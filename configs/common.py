"""Fields every task's config shares: optimiser, schedule, loop, losses.

configs/fen.py, configs/detection.py and configs/attribution.py start from
`base_config(task)` and set what differs.
"""

import ml_collections

from jaxfp import augment
from jaxfp.losses import fingerprint as fingerprint_losses


def base_config(task: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = task
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.fen_depth = 17
  config.model.fen_width = 64
  config.model.use_fen = True
  config.model.dropout_rate = 0.5
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.fingerprint_weights = ml_collections.ConfigDict(
      fingerprint_losses.PUBLISHED_WEIGHTS[task])
  config.loss.low_freq_radius = fingerprint_losses.DEFAULT_LOW_FREQ_RADIUS
  # One max over the whole (global) batch, as published; False: per image.
  config.loss.batch_global_max = True
  # Cross-entropy on sigmoid outputs, the published quirk, for parity only.
  config.loss.published_sigmoid_ce = False

  # Training-image perturbations (jaxfp.augment); off unless set.
  config.augment = augment.default_config()

  config.batch_size = 16
  config.learning_rate = 1e-4
  config.lr_schedule = 'constant'  # 'constant' | 'warmup_cosine'.
  config.warmup_steps = 0
  config.num_train_steps = 80
  config.log_every_steps = 10
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 40
  config.keep_checkpoints = 3
  return config


def cpu_preset(config: ml_collections.ConfigDict, *, num_train_steps: int,
               warmup_steps: int, eval_every_steps: int,
               checkpoint_every_steps: int) -> None:
  """What every `:cpu` preset shares: a FEN-5 of width 16 and a larger,
  warmed-up and cosine-decayed learning rate, so that a 2-core CPU learns
  measurably in minutes."""
  config.model.fen_depth = 5
  config.model.fen_width = 16
  config.learning_rate = 1e-3
  config.lr_schedule = 'warmup_cosine'
  config.warmup_steps = warmup_steps
  config.num_train_steps = num_train_steps
  config.log_every_steps = 50
  config.eval_every_steps = eval_every_steps
  config.checkpoint_every_steps = checkpoint_every_steps
