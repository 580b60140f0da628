"""TFDS builder `jaxfp_zoo`: images of the built-in zoo of generators.

The images come from `jaxfp.zoo.cached(zoo_config, cache_root)`, which
generates the zoo tree (images/<gm>/, ground_truth.csv, schema.json) if it is
not there yet. Each (zoo config, image size) pair gets its own builder config,
named after a hash of both, so different zoos never share records and one zoo
is built once. The predefined config 'default' is the default zoo at 64x64
(its records remember which zoo they hold: `info.metadata['zoo_fingerprint']`):

    import jaxfp.datasets
    ds = tfds.load('jaxfp_zoo', data_dir=...)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import ml_collections
import tensorflow_datasets as tfds

from jaxfp.datasets import folder

DEFAULT_IMAGE_SIZE = 64


def zoo_json(zoo_config: ml_collections.ConfigDict) -> str:
  """A stable JSON form of a zoo config (keys sorted)."""
  return zoo_config.to_json_best_effort(sort_keys=True)


def default_zoo_config() -> ml_collections.ConfigDict:
  # Imported here: the zoo pulls in jax/flax, which building records from an
  # existing tree does not need.
  from jaxfp import zoo  # pylint: disable=g-import-not-at-top
  return zoo.default_config()


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
  zoo: ml_collections.ConfigDict | None = None  # None: the default zoo.


class ZooDataset(folder.FolderBuilder):
  """Images of jaxfp's zoo of small generators, one class per generator."""

  name = 'jaxfp_zoo'
  BUILDER_CONFIGS = [
      ZooConfig(name='default', image_size=DEFAULT_IMAGE_SIZE,
                description='jaxfp.zoo.default_config(), 64x64 images.'),
  ]

  def __init__(self, *, zoo_config: ml_collections.ConfigDict | None = None,
               image_size: int | None = None,
               zoo_cache_dir: str | None = None, config=None, **kwargs):
    """As any builder, plus (all optional).

    Args:
      zoo_config: the zoo to read; picks (or makes) the builder config.
      image_size: images are resized to this (default 64).
      zoo_cache_dir: where `jaxfp.zoo.cached` keeps zoo trees (default
        $JAXFP_CACHE/zoo or ~/.cache/jaxfp/zoo).
      config: a builder config or its name; not with zoo_config/image_size.
      **kwargs: passed to the TFDS builder (data_dir, version...).
    """
    if config is not None and (zoo_config is not None or image_size):
      raise ValueError('give either config or zoo_config/image_size, not both')
    if config is None and (zoo_config is not None or image_size):
      config = self.config_for(zoo_config, image_size or DEFAULT_IMAGE_SIZE)
    self._zoo_cache_dir = zoo_cache_dir or os.path.join(
        folder.default_cache_dir(), 'zoo')
    super().__init__(config=config, **kwargs)

  @classmethod
  def config_for(cls, zoo_config: ml_collections.ConfigDict | None,
                 image_size: int) -> str | ZooConfig:
    """'default' for the default zoo at 64x64, else a hashed custom config."""
    default = default_zoo_config()
    zoo_config = zoo_config if zoo_config is not None else default
    if (image_size == DEFAULT_IMAGE_SIZE and
        zoo_fingerprint(zoo_config) == zoo_fingerprint(default)):
      return 'default'
    return ZooConfig(
        name=config_name(zoo_config, image_size), image_size=image_size,
        zoo=zoo_config,
        description=f'zoo {zoo_json(zoo_config)}, {image_size}x{image_size}.')

  def zoo_config(self) -> ml_collections.ConfigDict:
    zoo = self.builder_config.zoo
    return zoo if zoo is not None else default_zoo_config()

  def _description(self) -> str:
    return (f'{self.__doc__}\nConfig: {self.builder_config.description}')

  def _source(self, dl_manager):
    from jaxfp import zoo  # pylint: disable=g-import-not-at-top
    zoo_config = self.zoo_config()
    root = zoo.cached(zoo_config, self._zoo_cache_dir)
    self.info.metadata['zoo_config'] = json.loads(zoo_json(zoo_config))
    self.info.metadata['zoo_fingerprint'] = zoo_fingerprint(zoo_config)
    return root, '', None
