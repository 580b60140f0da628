"""TFDS builders over image trees (`jaxfp.data.trees`); subclasses say
where the tree is, `prepare` builds (or rebuilds) the records.

Images are read by the one image loader (`jaxfp.data.images.load_image`).
A file that cannot be decoded is skipped and reported, never fatal: one bad
file in 116K must not lose a build.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import inspect
import logging as std_logging
import os
import shutil
from collections.abc import Callable, Iterator

from absl import logging
from etils import epath
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxfp.core import console
from jaxfp.data import images as images_lib
from jaxfp.data import trees


def generate_examples(
    found: trees.Scan, image_size: int, skipped: list,
) -> Iterator[tuple[str, dict]]:
  """Yields (key, {'image', 'gm', 'file'}) for every readable image.

  Unreadable files are logged, appended to `skipped` as [file, reason] and
  not yielded.
  """
  for gm in found.gm_names:
    for rel in found.files[gm]:
      try:
        image = images_lib.load_image(
            os.path.join(found.images_root, rel), image_size)
      except images_lib.ImageError as e:
        logging.warning('Skipping unreadable image %s: %s',
                        os.path.join(found.images_root, rel), e)
        skipped.append([rel, str(e)])
        continue
      yield rel, {'image': image, 'gm': gm, 'file': rel}


@contextlib.contextmanager
def _custom_configs_unannounced():
  def quiet(record: std_logging.LogRecord) -> bool:
    return not record.getMessage().startswith('Using custom data configuration')

  logger = std_logging.getLogger('absl')
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


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

  def __init__(self, **kwargs):
    # Every config of these builders is made from parameters (a tree, a zoo,
    # an image size), which TFDS announces as a 'custom data configuration'
    # warning at each construction: no news, so not shown.
    with _custom_configs_unannounced():
      super().__init__(**kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 looks this up through `importlib_resources`, which it does
    # not install on Python >= 3.9; the class's file is what it would find.
    return epath.Path(inspect.getfile(cls))

  # TFDS prints two lines of its own around a build; the console has ours
  # ('Building ...'), and theirs show at --verbosity=1.
  def _log_download_bytes(self) -> None:
    logging.debug('Preparing %s in %s', self.name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.debug('%s prepared in %s', self.name, self.data_dir)

  def _source(self, dl_manager) -> tuple[str, str, dict[str, str] | None]:
    """(dataset root, ground-truth dir or '' for the root, npy file names)."""
    raise NotImplementedError

  def _source_if_present(self, manual_dir: str
                         ) -> tuple[str, str, dict[str, str] | None] | None:
    """`_source` as it is now, if the tree is there without building
    anything; None when it is not (the records are then used as built)."""
    del manual_dir
    return None

  def _content(self, found: trees.Scan, ground_truth_dir: str,
               npy_files: dict[str, str] | None) -> str:
    """The content key of a tree and its ground truth (`trees.content_key`),
    recorded with the records and compared before they are used."""
    return trees.content_key(found, trees.ground_truth_files(
        found, ground_truth_dir, npy_files))

  def current_content(self, manual_dir: str = '') -> str | None:
    """The content key of the source tree now; None if it is not there."""
    source = self._source_if_present(manual_dir)
    if source is None:
      return None
    root, ground_truth_dir, npy_files = source
    return self._content(trees.scan(root), ground_truth_dir, npy_files)

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
    found = trees.scan(root)
    table, source = trees.read_ground_truth(found, ground_truth_dir,
                                            npy_files)
    return self._build(
        found, 'GMs', self._content(found, ground_truth_dir, npy_files),
        ground_truth=table.to_dict(), ground_truth_source=source)

  def _build(self, found: trees.Scan, what: str, content: str, **metadata):
    """The 'train' split of every readable image of `found`, one folder per
    `what` ('GMs', 'classes'); the records' metadata gets `metadata`, then
    'source', 'gm_counts', 'skipped_files' and 'content'."""
    self.info.features['gm'].names = list(found.gm_names)
    counts = dict.fromkeys(found.gm_names, 0)
    skipped = []
    # Filled while the generator runs; TFDS writes the metadata after it.
    self.info.metadata.update({
        **metadata, 'source': os.path.abspath(found.images_root),
        'gm_counts': counts, 'skipped_files': skipped, 'content': content,
    })
    logging.info('Building %s from %d files of %d %s in %s.', self.name,
                 found.num_files, len(found.gm_names), what, found.images_root)
    return {'train': self._generate_examples(found, skipped, counts)}

  def _generate_examples(self, found, skipped, counts):
    size = self.builder_config.image_size
    for key, example in generate_examples(found, size, skipped):
      counts[example['gm']] += 1
      yield key, example


def records(builder: tfds.core.DatasetBuilder) -> tf.data.Dataset:
  """Every record in its stored (fixed) order, nothing decoded: pipelines
  filter on the labels and file names first, then decode what they keep."""
  return builder.as_dataset(
      split='train', shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding(),
                'file': tfds.decode.SkipDecoding()})


def _is_built(builder: tfds.core.DatasetBuilder) -> bool:
  """`builder.is_prepared()`, without TFDS's warning that the (empty)
  folder a builder makes for its records has no dataset_info.json yet: on
  a first build that line is noise."""
  return ((epath.Path(builder.data_dir) / 'dataset_info.json').exists() and
          builder.is_prepared())


def prepare(make: Callable[[], FolderBuilder], manual_dir: str = '',
            **kwargs) -> FolderBuilder:
  """The builder `make()` gives, its records built (`download_and_prepare`)
  or, if they were built from another state of the source tree (another
  `manual_dir`, files added, removed or changed since: `current_content`),
  rebuilt. TFDS's progress bars only at --verbosity=1 and more (the console
  shows one progress display)."""
  builder = make()
  with _build_lock(builder.data_dir) as waited:
    if waited:
      builder = make()  # What the other process built while we waited.
    return _prepare_locked(builder, make, manual_dir, **kwargs)


@contextlib.contextmanager
def _build_lock(data_dir: str) -> Iterator[bool]:
  """Holds `.<config>.lock` beside the records' config folder, so that two
  processes never build (or rebuild) one records folder at once: the second
  waits, then finds the records built. Yields whether it waited. A cache
  where no lock can be made (read-only) is used without one: nothing will
  be written to it."""
  config_dir = os.path.dirname(os.path.abspath(data_dir))
  path = os.path.join(os.path.dirname(config_dir),
                      f'.{os.path.basename(config_dir)}.lock')
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError:
    yield False
    return
  try:
    waited = False
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      logging.warning('Waiting for another process that is building the '
                      'records in %s.', config_dir)
      fcntl.flock(fd, fcntl.LOCK_EX)
      waited = True
    yield waited
  finally:
    os.close(fd)  # Releases the lock.


def _prepare_locked(builder, make, manual_dir: str, **kwargs):
  """`prepare` under the records' lock."""
  if _is_built(builder):
    meta = read_metadata(builder)
    built = meta.get('content')
    now = builder.current_content(manual_dir)
    if now is None or now == built:
      return builder
    source = meta.get('source', '?')
    if _read_only(builder.data_dir):
      logging.warning('The %s records in %s were built from another state '
                      'of %s, but that folder is read-only: they are used '
                      'as they are.', builder.name, builder.data_dir, source)
      return builder
    why = ('they predate records that remember their tree' if built is None
           else 'that tree has changed, or another one is asked for')
    logging.info('Rebuilding the %s records (built from %s): %s.',
                 builder.name, source, why)
    try:
      shutil.rmtree(builder.data_dir)
    except OSError as e:
      raise OSError(f'the {builder.name} records in {builder.data_dir} '
                    f'cannot be rebuilt: {e.strerror or e}') from e
    builder = make()  # A builder reads its records' info when created.
  if not console.verbose():
    tfds.disable_progress_bar()
  try:
    builder.download_and_prepare(**kwargs)
  except OSError as e:
    if e.errno not in _NOT_WRITABLE:
      raise
    # The library's message names a file in the folder, not the folder.
    raise OSError(f'the {builder.name} records in {builder.data_dir} cannot '
                  f'be written: {e.strerror or e}') from e
  return builder


# A folder that cannot take the records: read-only, not ours, or full.
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC)


def _read_only(path: str) -> bool:
  """Whether records in `path` cannot be replaced: a read-only mount (which
  binds root too) or a folder this user may not write."""
  parent = os.path.dirname(os.path.abspath(path))
  try:
    if os.statvfs(path).f_flag & os.ST_RDONLY:
      return True
  except OSError:
    return False
  return not os.access(parent, os.W_OK | os.X_OK)
