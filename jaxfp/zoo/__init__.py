"""The built-in zoo: hundreds of small generators with known ground truth
(docs/zoo.md), written in the layout of the real dataset (see `build`).

  from configs import zoo as zoo_config
  path = cached(zoo_config.get_config(), '/tmp/zoos')  # builds once
"""

from jaxfp.zoo.store import cached
from jaxfp.zoo.store import generate

__all__ = ['cached', 'generate']
