"""TFDS builder `image_classes`: images in one folder per class.

For detection and attribution: `root/<class>/**/*.png` (or any extension of
`jaxfp.data.images.IMAGE_EXTENSIONS`), class names are the folder names in
sorted order, so `real/` + `fake/` gives real = 0, fake = 1. Unreadable
files are skipped, counted and named at build time, as for the parsing
datasets. Each (root, image size) pair gets its own builder config, named
after a hash of both; records remember the tree's content key
(`jaxfp.data.trees.content_key`), and `folder.prepare` rebuilds them when
the tree has changed since.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import tensorflow_datasets as tfds

from jaxfp.data import trees
from jaxfp.data.builders import folder


@dataclasses.dataclass(eq=False)
class ImageClassesConfig(tfds.core.BuilderConfig):
  image_size: int = 128
  root: str = ''


def config_name(root: str, image_size: int) -> str:
  root = os.path.abspath(os.path.expanduser(root))
  digest = hashlib.sha256(root.encode()).hexdigest()[:10]
  base = re.sub(r'[^A-Za-z0-9]+', '_', os.path.basename(root))[:40] or 'root'
  return f'{base}_{digest}_{image_size}'


class ImageClasses(folder.FolderBuilder):
  """Images in one folder per class; the 'gm' feature holds the class."""

  name = 'image_classes'

  def __init__(self, *, root: str, image_size: int, **kwargs):
    config = ImageClassesConfig(
        name=config_name(root, image_size), image_size=image_size,
        root=os.path.abspath(os.path.expanduser(root)),
        description=f'{root} at {image_size}x{image_size}.')
    super().__init__(config=config, **kwargs)

  def _source_if_present(self, manual_dir):
    del manual_dir
    root = self.builder_config.root
    return (root, '', None) if os.path.isdir(root) else None

  def _content(self, found, ground_truth_dir, npy_files):
    del ground_truth_dir, npy_files  # Classes are folder names: no table.
    return trees.content_key(found)

  def _split_generators(self, dl_manager):
    found = trees.scan(self.builder_config.root)
    if len(found.gm_names) < 2:
      raise ValueError(f'{found.images_root} has {len(found.gm_names)} class '
                       f'folder(s) with images ({list(found.gm_names)}); a '
                       'classifier needs at least two')
    return self._build(found, 'classes', self._content(found, '', None))
