"""The data side of a parsing run's per-image answer
(`jaxfp.inference.answer`): what it is fitted on, and the few examples a run
shows at its end.

Fitted on process 0 after the final evaluation, from
  - the training generators' images (generated, and the in-distribution
    score's training set),
  - as many random crops of the training photographs (real; the photographs
    the zoo's generators were trained on, `zoo.photos.PHOTO_SETS['train']`),
  - the held-out generators' images and the parser's outputs on them
    (temperatures, conformal intervals, the in-distribution reference),
  - the held-out evaluation's scores (which hyperparameters are
    identifiable).
The calibration and test photographs are never fitted on.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np
from PIL import Image

from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.inference import answer as answer_lib
from jaxfp.report import metrics as metrics_lib
from jaxfp.tasks import common

EXAMPLES_DIR = 'answer_examples'


def identifiable(result: dict, schema: schema_lib.Schema) -> list[str]:
  """Hyperparameters parsed on the held-out GMs: at z >= 2 against random
  ground truth and strictly better than the training prior."""
  model, z = result['metrics'], result['z']
  prior = result.get('train_prior') or {}
  names = []
  for _, name, key in metrics_lib.deciding_keys(schema):
    if (key in model and metrics_lib.is_significant(z.get(key)) and
        np.isfinite(prior.get(key, np.nan)) and
        metrics_lib.strictly_better(key, model[key], prior[key])):
      names.append(name)
  return names


def real_crops(image_size: int, num: int, seed: int,
               which: str = 'train') -> np.ndarray:
  """uint8 random crops [num, s, s, 3] of a photo set, at the zoo's scale."""
  from jaxfp.zoo import photos  # pylint: disable=g-import-not-at-top
  found = photos.load_set(which, image_size)
  crops = photos.random_crops(np.random.default_rng(seed),
                              list(found.values()), num, image_size)
  return np.clip(np.rint(crops * 255.0), 0, 255).astype(np.uint8)


def fit(config: ml_collections.ConfigDict, info: splits.DataInfo,
        result: dict) -> answer_lib.Answerer:
  """The run's answer, fitted as the module docstring says."""
  c = config.answer
  size = config.data.image_size
  generated, _ = common.read_images(config.data, info, 'train')
  held_out, _ = common.read_images(config.data, info, 'test')
  real = real_crops(size, c.num_real or len(generated), config.seed)
  gt = info.ground_truth
  return answer_lib.fit(
      schema=gt.schema, generated_train=generated, real_train=real,
      held_out_images=held_out,
      held_out_predictions=result['predictions'],
      held_out_truth=metrics_lib.Labels.of(gt, result['rows']),
      identifiable=identifiable(result, gt.schema), image_size=size,
      pool=config.model.spectrum_pool, augment_prob=c.augment_prob,
      resize_prob=c.resize_prob, ood_alpha=c.ood_alpha,
      threshold=c.threshold, coverage=c.coverage, seed=config.seed)


def write_examples(config: ml_collections.ConfigDict, info: splits.DataInfo,
                   workdir: str, photographs: int = 2) -> str:
  """A few held-out images as PNGs in <workdir>/answer_examples: one of a
  held-out GM of each family (of the first three held-out GMs where the
  table has no family), and crops of photographs never fitted on. Returns
  the folder."""
  folder = os.path.join(workdir, EXAMPLES_DIR)
  os.makedirs(folder, exist_ok=True)
  images, rows = common.read_images(config.data, info, 'test')
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
                                      config.seed, which='calibration')):
    Image.fromarray(crop).save(os.path.join(folder, f'photograph_{i}.png'))
  return folder
