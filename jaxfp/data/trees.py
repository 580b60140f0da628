"""Dataset trees: one folder of images per generative model, and their
ground truth. No TensorFlow.

Layout (the zoo and the published dataset alike):

    root/images/<gm_name>/**/*.{png,jpg,jpeg,webp,bmp}   (or root/<gm_name>/)
    root/ground_truth.csv + root/schema.json             (or the published
                                                         .npy tables)

A folder-per-class tree (detection, attribution) is the same layout with
classes in place of GMs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

from absl import logging

import ml_collections

from jaxfp.core import console
from jaxfp.core import schema as schema_lib
from jaxfp.data import images as images_lib

IMAGES_DIR = 'images'
# The published 116-GM tables (docs/published.md, "Ground-truth tables").
PUBLISHED_NPY_FILES = {
    'net': 'ground_truth_net_116_15dim.npy',
    'coarse': 'ground_truth_loss_116_3dim.npy',
    'fine': 'ground_truth_loss_116_9dim.npy',
}


def default_cache_dir() -> str:
  """$JAXFP_CACHE, else ~/.cache/jaxfp."""
  return os.environ.get('JAXFP_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'jaxfp')


def zoo_tree(zoo_config: ml_collections.ConfigDict, cache_dir: str) -> str:
  """The built-in zoo's tree (`jaxfp.zoo.cached`), built first if needed."""
  # Imported here: the zoo pulls in flax and scikit-image, which reading a
  # built tree does not need.
  from jaxfp import zoo  # pylint: disable=g-import-not-at-top
  with console.quietly(f'The zoo of {zoo_config.num_generators} generators '
                       '(built once, then cached)'):
    return zoo.cached(zoo_config, cache_dir)


def built_zoo_tree(zoo_config: ml_collections.ConfigDict,
                   cache_dir: str) -> str | None:
  """The zoo's tree if it is built already (nothing is built), else None."""
  from jaxfp.zoo import store  # pylint: disable=g-import-not-at-top
  path = store.cache_path(zoo_config, cache_dir)
  return path if store.is_zoo(path) else None


@dataclasses.dataclass(frozen=True)
class Scan:
  """The image files of a dataset tree, GM by GM, in sorted order."""
  root: str
  images_root: str
  # GM name -> paths relative to images_root ('gm/sub/x.png'), sorted.
  files: dict[str, tuple[str, ...]]

  @property
  def gm_names(self) -> tuple[str, ...]:
    return tuple(sorted(self.files))

  @property
  def num_files(self) -> int:
    return sum(len(f) for f in self.files.values())


def scan(root: str) -> Scan:
  """Lists the GM folders of `root` and their image files, sorted.

  GM folders sit in `root/images/` if that exists, else directly in `root`.
  Folders holding no image file are not GMs (e.g. a folder of npy tables
  beside the published GM folders); they are logged and ignored.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f'dataset directory {root} does not exist')
  images_root = os.path.join(root, IMAGES_DIR)
  if not os.path.isdir(images_root):
    images_root = root
  files = {}
  for gm in sorted(filter(images_lib.visible, os.listdir(images_root))):
    gm_dir = os.path.join(images_root, gm)
    if not os.path.isdir(gm_dir):
      continue
    found = [os.path.relpath(path, images_root)
             for path in images_lib.files_under(gm_dir)]
    if found:
      files[gm] = tuple(sorted(found))
    else:
      logging.warning('%s holds no image file (%s); not a GM, ignored.',
                      gm_dir, ', '.join(images_lib.IMAGE_EXTENSIONS))
  if not files:
    raise ValueError(f'no GM folder with images in {images_root}; expected '
                     f'{images_root}/<gm_name>/*.png (or '
                     f'{", ".join(images_lib.IMAGE_EXTENSIONS[1:])})')
  return Scan(root=root, images_root=images_root, files=files)


def ground_truth_files(found: Scan, ground_truth_dir: str = '',
                       npy_files: dict[str, str] | None = None) -> list[str]:
  """Every file `read_ground_truth` may read (present or not)."""
  directory = ground_truth_dir or found.root
  names = [schema_lib.CSV_NAME, schema_lib.SCHEMA_NAME,
           *dict(npy_files or PUBLISHED_NPY_FILES).values()]
  return [os.path.join(directory, name) for name in names]


def content_key(found: Scan, extra_files: Sequence[str] = ()) -> str:
  """A digest of what records built from `found` would hold: every image
  file's path in the tree, size and modification time, and those of
  `extra_files` (the ground truth; absent ones count as absent). Cheap: one
  stat per file, no image is read. Another digest means the tree changed
  since: a file added, removed, replaced or touched."""
  digest = hashlib.sha256()
  entries = [(rel, os.path.join(found.images_root, rel))
             for gm in found.gm_names for rel in found.files[gm]]
  # Named relative to the tree when inside it: a cache copied or mounted
  # elsewhere (the zoo's ground truth lives in it) is the same content.
  root = os.path.abspath(found.root)
  entries += [(os.path.relpath(os.path.abspath(path), root)
               if os.path.abspath(path).startswith(root + os.sep)
               else os.path.abspath(path), path) for path in extra_files]
  for name, path in entries:
    try:
      stat = os.stat(path)
      facts = f'{stat.st_size} {stat.st_mtime_ns}'
    except FileNotFoundError:
      facts = 'absent'
    digest.update(f'{images_lib.shown(name)}\0{facts}\n'.encode())
  return digest.hexdigest()


def read_ground_truth(
    found: Scan, ground_truth_dir: str = '',
    npy_files: dict[str, str] | None = None,
) -> tuple[schema_lib.GroundTruth, str]:
  """The ground-truth rows of the GMs in `found`, in sorted GM order.

  Looks in `ground_truth_dir` (default: the dataset root) for
  `ground_truth.csv` + `schema.json`, else for the published npy tables named
  by `npy_files` (keys net, coarse, fine), whose rows are the sorted GM
  folders. Rows are matched to folders by name. Returns the table and a
  description of where it came from.
  """
  directory = ground_truth_dir or found.root
  npy_files = dict(npy_files or PUBLISHED_NPY_FILES)
  csv_path = os.path.join(directory, schema_lib.CSV_NAME)
  npy_paths = {k: os.path.join(directory, npy_files[k])
               for k in ('net', 'coarse', 'fine')}
  if os.path.exists(csv_path):
    table = schema_lib.read_csv(directory)
    source = csv_path
  elif all(os.path.exists(p) for p in npy_paths.values()):
    table = schema_lib.from_published_npy(
        npy_paths['net'], npy_paths['coarse'], npy_paths['fine'],
        gm_names=found.gm_names)
    source = ', '.join(npy_paths.values())
  else:
    raise FileNotFoundError(
        f'no ground truth in {directory}: expected {schema_lib.CSV_NAME} + '
        f'{schema_lib.SCHEMA_NAME}, or the npy tables '
        f'{sorted(npy_files.values())}')
  rows = set(table.gm_names)
  for gm in found.gm_names:
    if gm not in rows:
      raise ValueError(
          f'GM folder {os.path.join(found.images_root, gm)} has no row in the '
          f'ground truth {source}')
  absent = sorted(rows - set(found.gm_names))
  if absent:
    logging.warning('%d GMs of the ground truth %s have no image folder in '
                    '%s and are left out: %s', len(absent), source,
                    found.images_root, absent)
  return table.select(found.gm_names), source


def log_summary(name: str, counts: dict[str, int],
                skipped: Sequence[Sequence[str]]) -> None:
  logging.debug('%s: %d images of %d GMs, %d files skipped.', name,
               sum(counts.values()), len(counts), len(skipped))
  if skipped:
    # One line: the builder named each file, with its reason, as it read it.
    shown = ', '.join(str(file) for file, _ in skipped[:3])
    more = f' and {len(skipped) - 3} more' if len(skipped) > 3 else ''
    logging.warning('%s: %s left out when the records were built: %s%s',
                    name, console.count(len(skipped), 'unreadable file'),
                    shown, more)
