"""TFDS builder `model_parsing`: the published model-parsing dataset.

The images (116 GMs, research use only) cannot be downloaded by code; they
go in the manual directory. Configs 'size_64' (model parsing) and 'size_128'
(detection/attribution input size) differ in the stored image size.

    import jaxfp.data.builders
    ds = tfds.load('model_parsing/size_64', data_dir=...,
                   download_and_prepare_kwargs={'download_config':
                       tfds.download.DownloadConfig(manual_dir=...)})

Ground truth: by default `ground_truth.csv` + `schema.json`, or the three
published npy tables, in the manual directory; `ground_truth_dir` and
`ground_truth_files` (constructor arguments or config fields) point
elsewhere. A builder whose ground truth differs from its named config gets a
derived config name, so its records are kept apart; so does a builder given
its `manual_dir`: two trees never share (and rebuild under each other) one
records folder. The records remember the manual directory's content
(`jaxfp.data.trees.content_key`); `folder.prepare` rebuilds them when it
changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import tensorflow_datasets as tfds

from jaxfp.data import trees
from jaxfp.data.builders import folder

_INSTRUCTIONS = """\
Put the model-parsing images in the manual directory, one folder per
generative model (GM), as

  <manual_dir>/images/<gm_name>/*.{png,jpg,jpeg,webp,bmp}
  (or <manual_dir>/<gm_name>/*.png ...)

and the ground truth beside them (or in `ground_truth_dir`): either
ground_truth.csv + schema.json (see jaxfp.core.schema.write_csv), or the
published tables ground_truth_net_116_15dim.npy, ground_truth_loss_116_3dim.npy and
ground_truth_loss_116_9dim.npy, whose rows follow the sorted GM folder names.
"""


@dataclasses.dataclass(eq=False)
class ModelParsingConfig(tfds.core.BuilderConfig):
  image_size: int = 64
  ground_truth_dir: str = ''  # '' = the manual directory.
  # Keys net, coarse, fine; None = the published 116-GM file names.
  ground_truth_files: dict[str, str] | None = None


def _ground_truth_key(ground_truth_dir: str,
                      files: dict[str, str] | None,
                      manual_dir: str | None = None) -> dict:
  key = {'dir': os.path.abspath(ground_truth_dir) if ground_truth_dir else '',
         'files': dict(sorted((files or trees.PUBLISHED_NPY_FILES).items()))}
  if manual_dir:
    # The tree itself, links resolved: another tree, other records.
    key['tree'] = os.path.realpath(os.path.expanduser(manual_dir))
  return key


class ModelParsing(folder.FolderBuilder):
  """Images of 116 generative models, labelled with their hyperparameters."""

  name = 'model_parsing'
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = [
      ModelParsingConfig(name='size_64', image_size=64,
                         description='64x64 images (model parsing).'),
      ModelParsingConfig(name='size_128', image_size=128,
                         description='128x128 images.'),
  ]

  def __init__(self, *, ground_truth_dir: str | None = None,
               ground_truth_files: dict[str, str] | None = None,
               image_size: int | None = None, config=None,
               manual_dir: str | None = None, **kwargs):
    """As any builder, plus (all optional).

    Args:
      ground_truth_dir: directory of the ground truth ('' = manual dir).
      ground_truth_files: npy file names, keys net, coarse, fine.
      image_size: picks the config of that size (a custom one if none).
      manual_dir: the tree the records are of; keys their folder.
      config: a builder config or its name (default 'size_64').
      **kwargs: passed to the TFDS builder (data_dir, version...).
    """
    if config is not None and image_size:
      raise ValueError('give either config or image_size, not both')
    base = self._base_config(config, image_size)
    if isinstance(base, ModelParsingConfig):
      wanted = dataclasses.replace(
          base,
          ground_truth_dir=(base.ground_truth_dir if ground_truth_dir is None
                            else ground_truth_dir),
          ground_truth_files=(base.ground_truth_files
                              if ground_truth_files is None
                              else dict(ground_truth_files)))
      key = _ground_truth_key(wanted.ground_truth_dir,
                              wanted.ground_truth_files, manual_dir)
      if key != _ground_truth_key(base.ground_truth_dir,
                                  base.ground_truth_files):
        digest = hashlib.sha256(
            json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        config = dataclasses.replace(wanted, name=f'{base.name}_gt{digest}')
      elif config is None:
        config = base
    super().__init__(config=config, **kwargs)

  @classmethod
  def _base_config(cls, config, image_size):
    if isinstance(config, ModelParsingConfig):
      return config
    if isinstance(config, str):
      name = config.split(':')[0]
      if name not in cls.builder_configs:
        return config  # TFDS reports the unknown name.
      return cls.builder_configs[name]
    size = image_size or 64
    for c in cls.BUILDER_CONFIGS:
      if c.image_size == size:
        return c
    return ModelParsingConfig(name=f'size_{size}', image_size=size,
                              description=f'{size}x{size} images.')

  def _source_if_present(self, manual_dir):
    if not (manual_dir and os.path.isdir(manual_dir)):
      return None
    return (manual_dir, self.builder_config.ground_truth_dir,
            self.builder_config.ground_truth_files)

  def _source(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    return (manual_dir, self.builder_config.ground_truth_dir,
            self.builder_config.ground_truth_files)
