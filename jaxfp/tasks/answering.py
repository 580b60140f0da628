"""The data side of a parsing run's per-image answer
(`jaxfp.inference.answer`): what it is fitted on, and the few examples a run
shows at its end.

Fitted on process 0 after the final evaluation, from
  - the training generators' images (generated, and the in-distribution
    score's training set),
  - as many random crops of the training photographs (real: every
    photograph scikit-image ships, `zoo.photos.PHOTO_SETS['train']`, and
    those under `config.answer.photo_dir` when it names a folder),
  - the held-out generators' images and the parser's outputs on them
    (temperatures, conformal intervals, the in-distribution reference),
  - the held-out evaluation's parsed count (which hyperparameters are
    identifiable).
The test photographs (of other packages) are never fitted on.
"""

from __future__ import annotations

import os

from absl import logging
import ml_collections
import numpy as np
from PIL import Image

from jaxfp.core import console
from jaxfp.data import images as images_lib
from jaxfp.data import splits
from jaxfp.inference import answer as answer_lib
from jaxfp.report import metrics as metrics_lib
from jaxfp.tasks import common

EXAMPLES_DIR = 'answer_examples'


# Photographs are cropped at two scales, their shorter side 4x (the zoo's)
# and 8x the image size: more kinds of real texture from few photographs.
PHOTO_SCALES = (4, 8)


def photo_files(directory: str) -> list[str]:
  """The image files under `config.answer.photo_dir`; a missing or empty
  folder is a ValueError naming it (raised before training, not after)."""
  if not os.path.isdir(directory):
    raise ValueError(f'config.answer.photo_dir={directory!r} is not a folder')
  found = images_lib.files_under(directory)
  if not found:
    raise ValueError(f'config.answer.photo_dir={directory!r} holds no image '
                     f'({", ".join(images_lib.IMAGE_EXTENSIONS)})')
  return found


def user_photographs(directory: str, image_size: int) -> list[np.ndarray]:
  """The photographs under `directory` at every `PHOTO_SCALES`, float32 in
  [0, 1]; each unreadable file is named in a warning and left out."""
  from jaxfp.zoo import photos  # pylint: disable=g-import-not-at-top
  pool, skipped = [], []
  for path in photo_files(directory):
    try:
      pool += photos.rescalings(
          path, [scale * image_size for scale in PHOTO_SCALES])
    except Exception as e:  # pylint: disable=broad-except
      # PIL raises many types for a bad file; each means "leave it out".
      skipped.append(path)
      logging.warning('config.answer.photo_dir: left out %s (%s: %s)',
                      images_lib.one_line(path), type(e).__name__, e)
  if not pool:
    raise ValueError(f'config.answer.photo_dir={directory!r}: none of its '
                     f'{len(skipped)} image files can be read')
  if skipped:
    logging.warning('config.answer.photo_dir: %s left out, %d read',
                    console.count(len(skipped), 'unreadable file'),
                    len(pool) // len(PHOTO_SCALES))
  return pool


def real_crops(image_size: int, num: int, seed: int,
               which: str = 'train', photo_dir: str = '') -> np.ndarray:
  """uint8 random crops [num, s, s, 3] of a photo set (`PHOTO_SCALES`),
  and of the photographs under `photo_dir` when one is given."""
  from jaxfp.zoo import photos  # pylint: disable=g-import-not-at-top
  pool = [image for scale in PHOTO_SCALES
          for image in photos.load_set(which, image_size, scale).values()]
  if photo_dir:
    pool += user_photographs(photo_dir, image_size)
  crops = photos.random_crops(np.random.default_rng(seed), pool, num,
                              image_size)
  return np.clip(np.rint(crops * 255.0), 0, 255).astype(np.uint8)


def fit(config: ml_collections.ConfigDict, info: splits.DataInfo,
        result: dict, held_out: np.ndarray) -> answer_lib.Answerer:
  """The run's answer, fitted as the module docstring says; `held_out`:
  the held-out GMs' images (`common.read_images(..., 'test')`)."""
  c = config.answer
  size = config.data.image_size
  generated, _ = common.read_images(config.data, info, 'train')
  real = real_crops(size, c.num_real or len(generated), config.seed,
                    photo_dir=c.get('photo_dir', ''))
  gt = info.ground_truth
  # Identifiable: parsed on the held-out GMs (`metrics.parsed_hyperparameters`:
  # random GT at z >= 2 and the training prior); none without a prior.
  parsed = result.get('parsed')
  return answer_lib.fit(
      schema=gt.schema, generated_train=generated, real_train=real,
      held_out_images=held_out,
      held_out_predictions=result['predictions'],
      held_out_truth=metrics_lib.Labels.of(gt, result['rows']),
      identifiable=list(parsed['names']) if parsed else [], image_size=size,
      pool=config.model.spectrum_pool, augment_prob=c.augment_prob,
      resize_prob=c.resize_prob, ood_alpha=c.ood_alpha,
      threshold=c.threshold, coverage=c.coverage, seed=config.seed)


def write_examples(config: ml_collections.ConfigDict, info: splits.DataInfo,
                   workdir: str, held_out: tuple[np.ndarray, np.ndarray],
                   photographs: int = 2) -> str:
  """A few held-out images as PNGs in <workdir>/answer_examples: one of a
  held-out GM of each family (of the first three held-out GMs where the
  table has no family), and crops of the test photographs, never fitted on.
  `held_out`: (images, rows) of the held-out GMs. Returns the folder."""
  folder = os.path.join(workdir, EXAMPLES_DIR)
  os.makedirs(folder, exist_ok=True)
  images, rows = held_out
  gt = info.ground_truth
  names = gt.schema.discrete_names
  column = names.index('family') if 'family' in names else None
  shown = set()
  for image, row in zip(images, rows):
    kind = (gt.gm_names[row] if column is None else
            gt.schema.discrete[column].classes[gt.discrete[row, column]])
    if kind in shown or len(shown) >= 3:
      continue
    shown.add(kind)
    Image.fromarray(image).save(
        os.path.join(folder, f'{gt.gm_names[row]}_{kind}.png'))
  for i, crop in enumerate(real_crops(config.data.image_size, photographs,
                                      config.seed, which='test')):
    Image.fromarray(crop).save(os.path.join(folder, f'photograph_{i}.png'))
  return folder
