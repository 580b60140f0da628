"""What detection and attribution configs share: a FEN + head classifier on
folder-per-class images (the built-in real-vs-zoo images by default).

Presets: '' / 'published' (the published networks at 128x128, batch 32, Adam
1e-4; a short step budget on a CPU), 'cpu' (narrow networks that learn in a
few minutes on 2 CPU cores), 'test' (tiny, for the test suite).
"""

import ml_collections

from configs import common
from configs import data

PRESETS = ('', 'published', 'cpu', 'test')


def classifier_config(task: str, fen_depth: int, task_weight: float,
                      preset: str) -> ml_collections.ConfigDict:
  if preset not in PRESETS:
    raise ValueError(f'configs/{task}.py has no preset {preset!r}; use one of '
                     f'{PRESETS}')
  config = common.base_config(task)
  config.data = data.classes(task, image_size=128)
  config.model.fen_depth = fen_depth
  config.model.head_channels = ()  # () = the published head.
  config.loss.task_weight = task_weight
  config.batch_size = 32

  if preset == 'cpu':
    common.cpu_preset(config, num_train_steps=400, warmup_steps=30,
                      eval_every_steps=200, checkpoint_every_steps=100)
    config.model.head_channels = ((8, 16, 32, 32, 32) if task == 'detection'
                                  else (8, 16))
  elif preset == 'test':
    config.data.image_size = config.data.zoo.image_size = 32
    config.data.zoo.num_generators = 2 if task == 'detection' else 3
    config.data.zoo.images_per_generator = 8
    config.data.zoo.train_steps = 2
    config.data.num_real = 16 if task == 'detection' else 8
    # Half held out: with 8 images a class, a quarter could leave one with
    # no test image, which the data refuses (jaxfp.data.classes).
    config.data.test_fraction = 0.5
    common.test_preset(config)
    config.loss.low_freq_radius = 4
    config.model.head_channels = ((4, 4, 8, 8, 8) if task == 'detection'
                                  else (4, 4))
  return config
