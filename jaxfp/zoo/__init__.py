"""The built-in zoo: small image-to-image generators with known ground truth.

Each generator has a sampled architecture and loss recipe (the labels of
`jaxfp.core.schema.ZOO`), is trained briefly on crops of the colour
photographs bundled with scikit-image, and then generates images from held-out crops.
The zoo is written in the layout of the real dataset (see `build`).

  from configs import zoo as zoo_config
  path = cached(zoo_config.get_config(), '/tmp/zoos')  # builds once
"""

from jaxfp.zoo.store import cached
from jaxfp.zoo.store import generate

__all__ = ['cached', 'generate']
