"""The built-in zoo: hundreds of small generators with known ground truth.

Three families: image-to-image nets (super-resolution, restoration,
colourisation), GAN generators and VAE decoders (noise-to-image). Each
generator has a sampled architecture and loss recipe (the labels of
`jaxfp.core.schema.ZOO`), is trained briefly on crops of the colour photographs
bundled with scikit-image, and then generates images from held-out crops or
latent maps. One compiled program per input kind trains every generator of
that kind (`supernet`). The zoo is written in the layout of the real dataset
(see `build`).

  from configs import zoo as zoo_config
  path = cached(zoo_config.get_config(), '/tmp/zoos')  # builds once
"""

from jaxfp.zoo.store import cached
from jaxfp.zoo.store import generate

__all__ = ['cached', 'generate']
