"""Reads a folder of generated images, one sub-folder per generative model.

Layout (the zoo and the published dataset alike):

    root/images/<gm_name>/**/*.{png,jpg,jpeg,webp,bmp}   (or root/<gm_name>/)
    root/ground_truth.csv + root/schema.json             (or the published
                                                         .npy tables)

Images are decoded with PIL, converted to 8-bit RGB and resized with PIL's
bilinear filter, which is what the published torchvision `Resize((s, s))`
does on PIL images. A file that cannot be decoded is skipped and reported,
never fatal: one bad file in 116K must not lose a build.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Iterator, Sequence

from absl import logging
from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from jaxfp import schema as schema_lib

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')
IMAGES_DIR = 'images'
# The published 116-GM tables (shared/reference/ground_truth).
PUBLISHED_NPY_FILES = {
    'net': 'ground_truth_net_116_15dim.npy',
    'coarse': 'ground_truth_loss_116_3dim.npy',
    'fine': 'ground_truth_loss_116_9dim.npy',
}


def default_cache_dir() -> str:
  """$JAXFP_CACHE, else ~/.cache/jaxfp."""
  return os.environ.get('JAXFP_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'jaxfp')


class ImageError(Exception):
  """An image file that cannot be used; the message says why."""


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


def _visible(name: str) -> bool:
  return not name.startswith('.')


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
  for gm in sorted(filter(_visible, os.listdir(images_root))):
    gm_dir = os.path.join(images_root, gm)
    if not os.path.isdir(gm_dir):
      continue
    found = []
    for dirpath, dirnames, filenames in os.walk(gm_dir, followlinks=True):
      dirnames[:] = sorted(filter(_visible, dirnames))
      for name in sorted(filter(_visible, filenames)):
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
          found.append(os.path.relpath(os.path.join(dirpath, name),
                                       images_root))
    if found:
      files[gm] = tuple(sorted(found))
    else:
      logging.warning('%s holds no image file (%s); not a GM, ignored.',
                      gm_dir, ', '.join(IMAGE_EXTENSIONS))
  if not files:
    raise ValueError(f'no GM folder with images in {images_root}; expected '
                     f'{images_root}/<gm_name>/*.png (or '
                     f'{", ".join(IMAGE_EXTENSIONS[1:])})')
  return Scan(root=root, images_root=images_root, files=files)


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


def to_rgb(img: Image.Image) -> Image.Image:
  """8-bit RGB; high-bit-depth images are rescaled, not clipped."""
  if img.mode in ('I', 'F') or img.mode.startswith('I;16'):
    a = np.asarray(img, dtype=np.float64)
    if img.mode.startswith('I;16') or (img.mode == 'I' and a.max() > 255):
      a = a / 257.0  # 16-bit range onto 8-bit.
    elif img.mode == 'F' and a.max() <= 1.0:
      a = a * 255.0  # Floats in [0, 1].
    img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), 'L')
  # Alpha is dropped, not composited: what PIL's (and torchvision's loader's)
  # convert('RGB') does, so pixels match the published preprocessing.
  return img if img.mode == 'RGB' else img.convert('RGB')


def load_image(path: str, image_size: int) -> np.ndarray:
  """uint8 [image_size, image_size, 3]; raises ImageError if unusable."""
  try:
    if os.path.getsize(path) == 0:
      raise ImageError('empty file (0 bytes)')
    with Image.open(path) as img:
      img.load()  # Decodes fully, so a truncated file fails here.
      img = to_rgb(img)
    if img.size != (image_size, image_size):
      img = img.resize((image_size, image_size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
  except ImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises many types (OSError, SyntaxError, ValueError, struct.error,
    # DecompressionBombError...) for bad files; all mean "skip this one".
    raise ImageError(f'{type(e).__name__}: {e}') from e
  if array.shape != (image_size, image_size, 3):
    raise ImageError(f'decoded to shape {array.shape}')
  return array


def generate_examples(
    found: Scan, image_size: int, skipped: list,
) -> Iterator[tuple[str, dict]]:
  """Yields (key, {'image', 'gm', 'file'}) for every readable image.

  Unreadable files are logged, appended to `skipped` as [file, reason] and
  not yielded.
  """
  for gm in found.gm_names:
    for rel in found.files[gm]:
      try:
        image = load_image(os.path.join(found.images_root, rel), image_size)
      except ImageError as e:
        logging.warning('Skipping unreadable image %s: %s',
                        os.path.join(found.images_root, rel), e)
        skipped.append([rel, str(e)])
        continue
      yield rel, {'image': image, 'gm': gm, 'file': rel}


def log_summary(name: str, counts: dict[str, int],
                skipped: Sequence[Sequence[str]]) -> None:
  logging.info('%s: %d images of %d GMs, %d files skipped.', name,
               sum(counts.values()), len(counts), len(skipped))
  for file, reason in skipped:
    logging.warning('%s: skipped %s (%s)', name, file, reason)


# ---------------------------------------------------------------- builder --

def read_metadata(builder: tfds.core.DatasetBuilder) -> dict:
  """A plain copy of `builder.info.metadata`.

  TFDS loads the metadata of built records lazily, on `[]`, `items()` and a
  few others, but not on `get` or `in`; a copy is safe with all of them.
  """
  return dict(builder.info.metadata.items())


class FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A TFDS builder over a folder tree; subclasses say where the tree is.

  Images are decoded, checked and resized once, at build time. The dataset
  metadata (`builder.info.metadata`) keeps what a reader needs without the
  source tree: 'ground_truth' (GroundTruth.to_dict of the GMs present, rows in
  the order of the 'gm' ClassLabel), 'gm_counts' (images per GM),
  'skipped_files' ([file, reason] pairs), 'ground_truth_source', 'source'.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 looks this up through `importlib_resources`, which it does
    # not install on Python >= 3.9; the class's file is what it would find.
    return epath.Path(inspect.getfile(cls))

  def _source(self, dl_manager) -> tuple[str, str, dict[str, str] | None]:
    """(dataset root, ground-truth dir or '' for the root, npy file names)."""
    raise NotImplementedError

  def _description(self) -> str:
    return self.__doc__ or ''

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=self._description(),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(s, s, 3)),
            # Names (the sorted GM folders) are only known once the tree is
            # found, at build time; they are saved with the records.
            'gm': tfds.features.ClassLabel(),
            'file': tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    root, ground_truth_dir, npy_files = self._source(dl_manager)
    found = scan(root)
    table, source = read_ground_truth(found, ground_truth_dir, npy_files)
    self.info.features['gm'].names = list(found.gm_names)
    counts = dict.fromkeys(found.gm_names, 0)
    skipped = []
    # Filled while the generator runs; TFDS writes the metadata after it.
    self.info.metadata.update({
        'ground_truth': table.to_dict(), 'ground_truth_source': source,
        'source': os.path.abspath(found.images_root), 'gm_counts': counts,
        'skipped_files': skipped,
    })
    logging.info('Building %s from %d files of %d GMs in %s.', self.name,
                 found.num_files, len(found.gm_names), found.images_root)
    return {'train': self._generate_examples(found, skipped, counts)}

  def _generate_examples(self, found, skipped, counts):
    size = self.builder_config.image_size
    for key, example in generate_examples(found, size, skipped):
      counts[example['gm']] += 1
      yield key, example
