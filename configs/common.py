"""Fields every task's config shares: optimiser, schedule, loop, losses.

configs/fen.py, configs/detection.py and configs/attribution.py start from
`base_config(task)` and set what differs.
"""

import ml_collections

# The published weights of the four fingerprint constraints for each task.
PUBLISHED_FINGERPRINT_WEIGHTS = {
    'parsing': {'magnitude': 0.1, 'spectrum': 0.05, 'repetitive': 0.001,
                'symmetry': 1.0},
    'detection': {'magnitude': 0.01, 'spectrum': 0.05, 'repetitive': 0.001,
                  'symmetry': 0.1},
    'attribution': {'magnitude': 0.01, 'spectrum': 0.05, 'repetitive': 0.001,
                    'symmetry': 0.1},
}
# The published radius of the low-frequency window (a 51 x 51 square).
PUBLISHED_LOW_FREQ_RADIUS = 25


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
      PUBLISHED_FINGERPRINT_WEIGHTS[task])
  config.loss.low_freq_radius = PUBLISHED_LOW_FREQ_RADIUS
  # One max over the whole (global) batch, as published; False: per image.
  config.loss.batch_global_max = True
  # Cross-entropy on sigmoid outputs, the published quirk, for parity only.
  config.loss.published_sigmoid_ce = False

  # Training-image perturbations (jaxfp.data.augment); off unless set.
  config.augment = augment()

  config.batch_size = 16
  config.learning_rate = 1e-4
  # Decoupled weight decay (AdamW) when > 0; published: plain Adam.
  config.weight_decay = 0.0
  config.lr_schedule = 'constant'  # 'constant' | 'warmup_cosine'.
  config.warmup_steps = 0
  # The schedule: num_train_steps when > 0 (it wins, also as an override);
  # else num_epochs passes over the training images, resolved to steps
  # once the data is known (ceil(epochs * images / batch_size)), so one
  # config serves datasets of any size.
  config.num_train_steps = 80
  config.num_epochs = 0.0
  config.log_every_steps = 10
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 40
  config.keep_checkpoints = 3
  return config


def augment() -> ml_collections.ConfigDict:
  """`config.augment`: off by default."""
  c = ml_collections.ConfigDict()
  # CNNDetection's blur + JPEG, each with this probability (0.1 and 0.5 were
  # its settings; 0.1 generalised best in its experiments).
  c.blur_jpeg_prob = 0.0
  # GANFingerprints' combination of all five, each with this probability.
  c.combination_prob = 0.0
  return c


def test_preset(config: ml_collections.ConfigDict) -> None:
  """What every `:test` preset shares: a FEN-3 of width 8 without dropout,
  4 steps of 8 images, and every log, evaluation and checkpoint twice, so
  that the test suite runs each path of the trainer in seconds."""
  config.data.shuffle_buffer = 64
  config.model.fen_depth = 3
  config.model.fen_width = 8
  config.model.dropout_rate = 0.0
  config.batch_size = 8
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2


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
