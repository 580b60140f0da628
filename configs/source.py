"""Source embedding on the built-in zoo: which images share a generator.

  --config=configs/source.py        the default: side features (residual
                                    spectrum + colour statistics) -> MLP ->
                                    128-d unit embedding, CosFace over the
                                    training GMs, 64 GMs held out to
                                    calibrate grouping and open-set scores
  --config=configs/source.py:cpu    the same network, fewer steps
  --config=configs/source.py:test   a tiny run for the test suite

The network reads no pixels through convolutions by default (model.use_fen
False), so a step is cheap on a CPU; `--config.model.use_fen=True
--config.model.spectrum=fingerprint` puts a FEN in front (docs/embeddings.md
measures the choices).
"""

import ml_collections

from configs import common
from configs import data

PRESETS = ('', 'cpu', 'test')


def get_config(preset: str = '') -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f'configs/source.py has no preset {preset!r}; use one of '
                     f'{PRESETS}')
  # The parsing task's defaults (optimiser fields, FEN constraints when a
  # FEN is used), then what differs.
  config = common.base_config('parsing')
  config.task = 'source'
  config.data = data.parsing()
  # Held-out GMs: never trained on; they calibrate the grouping threshold
  # and the open-set probability (jaxfp.inference.sources.calibrate).
  config.data.num_test_gms = 64

  m = config.model
  m.use_fen = False
  m.fen_depth = 5
  m.fen_width = 16
  # Inputs (jaxfp.models.parsing_network.SideFeatures): the log spectrum of
  # '' (none), 'residual' (image minus its blur) or 'fingerprint' (needs
  # use_fen), pooled to spectrum_pool^2, plus its radial profile; and the
  # image's colour statistics.
  m.spectrum = 'residual'
  m.spectrum_pool = 16
  m.colour_stats = True
  # Residual statistics the side features lack (jaxfp.models.embedding.
  # trace_statistics): moments, channel and neighbour correlations, the
  # colour-difference spectrum, image quantiles.
  m.trace_stats = True
  m.hidden = (512, 512)
  m.embed_dim = 128
  m.dropout_rate = 0.5

  c = config.loss
  c.margin_weight = 1.0  # CosFace (additive-margin softmax).
  c.margin = 0.35
  c.scale = 30.0
  # Supervised contrastive term among the images of a batch; off: random
  # batches hold few same-GM pairs.
  c.contrastive_weight = 0.0
  c.temperature = 0.1

  config.batch_size = 256
  config.learning_rate = 1e-3
  config.weight_decay = 1e-4
  config.lr_schedule = 'warmup_cosine'
  config.warmup_steps = 100
  config.num_train_steps = 3000
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 500

  if preset == 'cpu':
    config.num_train_steps = 1500
    config.eval_every_steps = 500
  elif preset == 'test':
    data.use_test_zoo(config.data)
    common.test_preset(config)
    m.fen_depth = 3
    m.fen_width = 8
    m.hidden = (16,)
    m.embed_dim = 8
    m.spectrum_pool = 8
  return config
