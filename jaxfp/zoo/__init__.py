"""The built-in zoo: small image-to-image generators with known ground truth.

Each generator has a sampled architecture and loss recipe (the labels of
`jaxfp.schema.ZOO`), is trained briefly on crops of the colour photographs
bundled with scikit-image, and then generates images from held-out crops.
The zoo is written in the layout of the real dataset (see `build`).

  config = default_config()
  path = cached(config, '/tmp/zoos')   # builds once, then returns at once
"""

from jaxfp.zoo.config import default_config
from jaxfp.zoo.store import cached
from jaxfp.zoo.store import generate

__all__ = ['cached', 'default_config', 'generate']
