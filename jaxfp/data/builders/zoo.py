"""TFDS builder `jaxfp_zoo`: images of the built-in zoo of generators.

The images come from `jaxfp.zoo.cached(zoo_config, cache_root)`, which
generates the zoo tree (images/<gm>/, ground_truth.csv, schema.json) if it is
not there yet. Each (zoo config, image size) pair gets its own builder config,
named after a hash of both (the zoo's own cache hash, which also changes with
the zoo's output format), so different zoos never share records and one zoo
is built once. The zoo's settings come from the caller (configs/zoo.py holds
the default ones):

    import jaxfp.data.builders
    from configs import zoo
    ds = tfds.load('jaxfp_zoo', data_dir=...,
                   builder_kwargs={'zoo_config': zoo.get_config()})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import ml_collections
import tensorflow_datasets as tfds

from jaxfp.data import trees
from jaxfp.data.builders import folder

DEFAULT_IMAGE_SIZE = 64


def zoo_json(zoo_config: ml_collections.ConfigDict) -> str:
  """A stable JSON form of a zoo config (keys sorted)."""
  return zoo_config.to_json_best_effort(sort_keys=True)


def zoo_fingerprint(zoo_config: ml_collections.ConfigDict) -> str:
  """Changes with the zoo config and with the zoo's output format.

  jaxfp.zoo's own cache hash covers both; without it, the config alone.
  """
  try:
    # pylint: disable-next=g-import-not-at-top
    from jaxfp.zoo import config as zoo_config_lib
    return str(zoo_config_lib.config_hash(zoo_config))
  except (ImportError, AttributeError):
    return hashlib.sha256(zoo_json(zoo_config).encode()).hexdigest()[:12]


def config_name(zoo_config: ml_collections.ConfigDict, image_size: int) -> str:
  """The builder config name of a zoo at an image size."""
  key = f'{zoo_fingerprint(zoo_config)}/{int(image_size)}'
  return f'zoo_{image_size}px_{hashlib.sha256(key.encode()).hexdigest()[:12]}'


@dataclasses.dataclass(eq=False)
class ZooConfig(tfds.core.BuilderConfig):
  image_size: int = DEFAULT_IMAGE_SIZE
  zoo: ml_collections.ConfigDict | None = None


class ZooDataset(folder.FolderBuilder):
  """Images of jaxfp's zoo of small generators, one class per generator."""

  name = 'jaxfp_zoo'

  def __init__(self, *, zoo_config: ml_collections.ConfigDict | None = None,
               image_size: int = DEFAULT_IMAGE_SIZE,
               zoo_cache_dir: str | None = None, **kwargs):
    """As any builder, plus the zoo.

    Args:
      zoo_config: the zoo to read (configs/zoo.py: the default zoo); picks
        the builder config.
      image_size: images are resized to this.
      zoo_cache_dir: where `jaxfp.zoo.cached` keeps zoo trees (default
        $JAXFP_CACHE/zoo or ~/.cache/jaxfp/zoo).
      **kwargs: passed to the TFDS builder (data_dir, version...).
    """
    if zoo_config is None:
      raise ValueError('the jaxfp_zoo builder needs zoo_config, the zoo to '
                       'read (configs/zoo.py holds the default zoo)')
    self._zoo_cache_dir = zoo_cache_dir or os.path.join(
        trees.default_cache_dir(), 'zoo')
    config = ZooConfig(
        name=config_name(zoo_config, image_size), image_size=image_size,
        zoo=zoo_config,
        description=f'zoo {zoo_json(zoo_config)}, {image_size}x{image_size}.')
    super().__init__(config=config, **kwargs)

  def _description(self) -> str:
    return f'{self.__doc__}\nConfig: {self.builder_config.description}'

  def _source_if_present(self, manual_dir):
    del manual_dir
    root = trees.built_zoo_tree(self.builder_config.zoo, self._zoo_cache_dir)
    return None if root is None else (root, '', None)

  def _source(self, dl_manager):
    zoo_config = self.builder_config.zoo
    root = trees.zoo_tree(zoo_config, self._zoo_cache_dir)
    self.info.metadata['zoo_config'] = json.loads(zoo_json(zoo_config))
    self.info.metadata['zoo_fingerprint'] = zoo_fingerprint(zoo_config)
    return root, '', None
