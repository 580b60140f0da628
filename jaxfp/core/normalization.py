"""The published input normalisation: every channel (x / 255 - MEAN) / STD.

Kept below the pipelines and the pictures: tf.data pipelines, inference on
image files, the PyTorch data loader and the pictures that undo it all use
this one definition, and none of them needs TensorFlow for it.
"""

MEAN = 0.6490
STD = 0.1269


def normalize(pixels, mean: float = MEAN, std: float = STD):
  """Float pixels in [0, 255] -> network input; numpy, tf or jax arrays."""
  return (pixels / 255.0 - mean) / std


def unit_range(images, mean: float = MEAN, std: float = STD):
  """Network input -> pixels in [0, 1] (not clipped): `normalize` undone."""
  return images * std + mean
