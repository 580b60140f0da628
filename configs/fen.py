"""Model parsing with FEN + PN on the built-in zoo of generators.

  --config=configs/fen.py        the published recipe as a full schedule:
                                 FEN-17 width 64, 64x64 input, batch 16, Adam
                                 1e-4, published loss weights, 20 epochs of
                                 the training images (the published
                                 reverse_eng.py). Days on a CPU: the trainer
                                 prints the projection and the CPU presets.
  --config=configs/fen.py:cpu    five PNs on the image's residual spectrum,
                                 colour and stage statistics, no FEN, Adam
                                 1e-3, a zoo of 800 generators: what
                                 generalises to unseen generators in minutes
                                 on a 2-core CPU (README's first command;
                                 docs/parsing.md).
  --config=configs/fen.py:cpu_fen  FEN-5 + a conv PN of 16-64 channels on the
                                 fingerprint: the published architecture at
                                 CPU scale (what the FEN ablations vary).
  --config=configs/fen.py:test   a tiny run for the test suite.

A fixed step count overrides the epochs: --config.num_train_steps=20000
(num_train_steps > 0 wins over num_epochs; the presets below set it).
"""

# Epochs of the published training (reverse_eng.py of
# vishal3477/Reverse_Engineering_GMs: 20 epochs, batch 16, Adam 1e-4).
PUBLISHED_EPOCHS = 20

import ml_collections

from configs import common
from configs import data


def get_config(preset: str = '') -> ml_collections.ConfigDict:
  config = common.base_config('parsing')
  config.data = data.parsing()
  config.model.pn_channels = (32, 64, 128, 256, 512)
  config.model.pn_hidden = (512, 256, 64)
  # PNs trained side by side on the same features, their logits averaged (a
  # deep ensemble); 1: the published single PN.
  config.model.pn_members = 1
  # The PN's side features (jaxfp.models.parsing_network.SideFeatures), off as
  # published: the log spectrum of '' (none), 'fingerprint' or 'residual'
  # (the image minus its blur), pooled to spectrum_pool^2; colour statistics.
  config.model.spectrum = ''
  config.model.spectrum_pool = 16
  config.model.colour_stats = False
  config.model.stage_stats = False
  config.loss.head_weight = 10.0  # Published: every parsing head loss x 10.
  config.loss.hierarchical = True
  config.loss.continuous = 'mse'  # Published; or 'l1', the reported metric.
  config.num_baseline_shuffles = 20
  # The published schedule, in epochs: the same on the zoo and on RED116.
  config.num_train_steps = 0
  config.num_epochs = PUBLISHED_EPOCHS
  # A checkpoint each 40 steps is a fraction of a second apart on a GPU.
  config.checkpoint_every_steps = 1000
  # The per-image answer fitted after training (jaxfp.inference.answer):
  # a detector, an in-distribution score and the parse's calibration.
  config.answer = ml_collections.ConfigDict()
  config.answer.enabled = True
  config.answer.num_real = 0  # Photograph crops; 0 = as many as generated.
  # A folder of camera photographs joined to the detector's real class (read
  # offline; '' = only the photographs scikit-image ships). Photographs are
  # what its false positives lack (docs/answers.md).
  config.answer.photo_dir = ''
  # CNNDetection's blur + JPEG, each with this probability, and resizing
  # down by 1-2.5x and back up: off, as measured best on unseen generators
  # and photographs (docs/answers.md).
  config.answer.augment_prob = 0.0
  config.answer.resize_prob = 0.0
  config.answer.ood_alpha = 0.05  # Below this p-value: outside, no parse.
  config.answer.threshold = 0.5  # P(generated) below this: real, no parse.
  config.answer.coverage = 0.9  # Of the continuous intervals.

  if preset == 'cpu':
    common.cpu_preset(config, num_train_steps=1500, warmup_steps=50,
                      eval_every_steps=500, checkpoint_every_steps=250)
    # What generalises to unseen generators in a CPU budget: the PN reads
    # the residual spectrum and colour statistics, no conv trunk and no FEN
    # (which did not change the parse at this scale; docs/parsing.md). L1,
    # the reported metric, for the continuous heads.
    config.model.use_fen = False
    config.model.pn_channels = ()
    config.model.spectrum = 'residual'
    config.model.colour_stats = True
    config.model.stage_stats = True
    # Five PNs averaged: every summary metric a little better on unseen
    # generators of two development seeds, for 40 s more (docs/parsing.md).
    config.model.pn_members = 5
    config.loss.continuous = 'l1'
    config.batch_size = 32
    # Twice the default zoo: 200 held-out generators give the figures their
    # power, and more training generators kept helping (docs/parsing.md).
    config.data.zoo.num_generators = 800
  elif preset == 'cpu_fen':
    # The published architecture at CPU scale: FEN-5 width 16 and a conv PN
    # of 16-64 channels reading the fingerprint. What the FEN ablations vary.
    common.cpu_preset(config, num_train_steps=1500, warmup_steps=50,
                      eval_every_steps=500, checkpoint_every_steps=250)
    config.model.pn_channels = (16, 32, 64, 64, 64)
    config.batch_size = 32
  elif preset == 'test':
    data.use_test_zoo(config.data)
    common.test_preset(config)
    config.model.pn_channels = (4, 4, 8, 8, 8)
    config.num_baseline_shuffles = 3
  elif preset not in ('', 'published'):
    raise ValueError(f'configs/fen.py has no preset {preset!r}; use one of '
                     "'', 'published', 'cpu', 'cpu_fen', 'test'")
  return config
