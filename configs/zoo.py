"""The built-in zoo of generators (`jaxfp.zoo`): 48 generators x 100 images
of 64x64, about 2 minutes on 2 idle CPU cores.

`config.data.zoo` of every preset starts from `get_config()`; the zoo is
cached under $JAXFP_CACHE by a hash of these fields.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.num_generators = 48
  config.images_per_generator = 100
  config.image_size = 64
  config.train_steps = 30
  config.train_batch_size = 4
  config.learning_rate = 2e-3
  # Images per jitted generation call; bounds activation memory, not results.
  config.generation_batch_size = 50
  config.seed = 0
  return config
