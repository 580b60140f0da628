"""Model parsing with FEN + PN on the built-in zoo of generators.

  --config=configs/fen.py        the published recipe: FEN-17 width 64, 64x64
                                 input, batch 16, Adam 1e-4, published loss
                                 weights (a short step budget on a CPU).
  --config=configs/fen.py:cpu    a smaller network and a larger learning rate
                                 that learn measurably in ~10 minutes on a
                                 2-core CPU (what README's first command runs).
  --config=configs/fen.py:test   a tiny run for the test suite.

A longer run is one override: --config.num_train_steps=20000.
"""

import ml_collections

from jaxfp import input_pipeline
from jaxfp.losses import fingerprint as fingerprint_losses


def get_config(preset: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = input_pipeline.default_data_config()

  config.model = ml_collections.ConfigDict()
  config.model.fen_depth = 17
  config.model.fen_width = 64
  config.model.use_fen = True
  config.model.pn_channels = (32, 64, 128, 256, 512)
  config.model.dropout_rate = 0.5
  config.model.dtype = 'float32'

  config.loss = ml_collections.ConfigDict()
  config.loss.fingerprint_weights = ml_collections.ConfigDict(
      fingerprint_losses.PUBLISHED_WEIGHTS['parsing'])
  config.loss.low_freq_radius = 25
  # One max over the whole (global) batch, as published; False: per image.
  config.loss.batch_global_max = True
  config.loss.head_weight = 10.0
  config.loss.hierarchical = True
  # Cross-entropy on sigmoid outputs, the published quirk, for parity only.
  config.loss.published_sigmoid_ce = False

  config.batch_size = 16
  config.learning_rate = 1e-4
  config.lr_schedule = 'constant'
  config.warmup_steps = 0
  config.num_train_steps = 80
  config.log_every_steps = 10
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 40
  config.keep_checkpoints = 3
  config.num_baseline_shuffles = 20

  if preset == 'cpu':
    config.model.fen_depth = 5
    config.model.fen_width = 16
    config.model.pn_channels = (16, 32, 64, 64, 64)
    config.batch_size = 32
    config.learning_rate = 1e-3
    config.lr_schedule = 'warmup_cosine'
    config.warmup_steps = 50
    config.num_train_steps = 1500
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 250
  elif preset == 'test':
    config.data.zoo.num_generators = 6
    config.data.zoo.images_per_generator = 6
    config.data.zoo.train_steps = 2
    config.data.num_test_gms = 2
    config.data.shuffle_buffer = 64
    config.model.fen_depth = 3
    config.model.fen_width = 8
    config.model.pn_channels = (4, 4, 8, 8, 8)
    config.model.dropout_rate = 0.0
    config.batch_size = 8
    config.num_train_steps = 4
    config.log_every_steps = 2
    config.eval_every_steps = 2
    config.checkpoint_every_steps = 2
    config.num_baseline_shuffles = 3
  elif preset not in ('', 'published'):
    raise ValueError(f'configs/fen.py has no preset {preset!r}; use one of '
                     "'', 'published', 'cpu', 'test'")
  return config
