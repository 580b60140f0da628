"""The built-in zoo of generators (`jaxfp.zoo`): 400 generators of three
families (image-to-image, GAN, VAE) x 25 images of 64x64.

`config.data.zoo` of every preset starts from `get_config()`; the zoo is
cached under $JAXFP_CACHE by a hash of these fields.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """60 steps of 4 crops of 16x16 per generator.

  A step costs ~9 ms of CPU at 16x16 crops (~25 ms at 32x32); each generator
  also costs ~0.4 CPU-s of generation, counting and writing, and the five
  shared programs ~15 CPU-s of compile each (docs/zoo.md).
  """
  config = ml_collections.ConfigDict()
  config.num_generators = 400
  config.images_per_generator = 25
  config.image_size = 64
  # Generator families, dealt in equal shares (jaxfp.zoo.config.FAMILIES).
  config.families = ('image_to_image', 'gan', 'vae')
  config.train_steps = 60
  config.train_batch_size = 4
  # Generators are convolutional: trained on crops of this side (at most
  # image_size), they generate image_size images. Smaller crops make a step
  # cheaper.
  config.train_crop_size = 16
  config.learning_rate = 2e-3
  # Images per jitted generation call; bounds activation memory, not results.
  config.generation_batch_size = 25
  config.seed = 0
  return config
