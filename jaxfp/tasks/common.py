"""Pieces every task shares: the fingerprint constraints, data iterators
and result files."""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from jaxfp.core import console
from jaxfp.core import distributed
from jaxfp.core import files
from jaxfp.core import normalization
from jaxfp.data import splits
from jaxfp.losses import fingerprint as fingerprint_losses
from jaxfp.report import plots
from jaxfp.report import summaries

AXIS = distributed.AXIS
FINGERPRINT_TERMS = fingerprint_losses.LOSS_NAMES


def uses_fen(config: ml_collections.ConfigDict) -> bool:
  return bool(config.model.get('use_fen', True))


def fingerprint_metric_names(config: ml_collections.ConfigDict):
  if not uses_fen(config):
    return ()
  return tuple(f'fingerprint_{t}' for t in FINGERPRINT_TERMS)


def fingerprint_terms(outputs: dict, config: ml_collections.ConfigDict):
  """Weighted sum of the four constraints on outputs['fingerprint'].

  Reuses outputs['spectrum'] when the model computed it already.
  """
  if not uses_fen(config):
    return 0.0, {}
  total, terms = fingerprint_losses.fingerprint_losses(
      outputs['fingerprint'], config.loss.fingerprint_weights,
      low_freq_radius=config.loss.low_freq_radius,
      batch_global_max=config.loss.batch_global_max, axis_name=AXIS,
      spectrum=outputs.get('spectrum'))
  return total, {f'fingerprint_{k}': v for k, v in terms.items()}


def gm_folder_data():
  """The tf.data side of datasets of GM folders (`jaxfp.data.gm_folders`),
  imported when data is read: the model, losses and scores of a task need
  no TensorFlow. The parsing and source tasks read the same data."""
  with console.native_output_hushed():
    from jaxfp.data import gm_folders  # pylint: disable=g-import-not-at-top
  return gm_folders


def read_images(data_config: ml_collections.ConfigDict,
                info: splits.DataInfo, split: str, batch_size: int = 256
                ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [N, s, s, 3] of a split and their rows in the ground truth.

  Read through the evaluation pipeline (one pass in record order, no
  augmentation): 'train' the images the trainer trains on, 'test' the
  held-out GMs', 'closed_set' the training GMs' held-back ones; the same
  records the parser reads. The pipeline hands out normalised floats; they
  are mapped back to the stored uint8 values, exact up to float rounding.
  """
  images, rows = [], []
  for batch in gm_folder_data().eval_iterator(
      data_config, info, global_batch_size=batch_size, local_device_count=1,
      split=split):
    real = batch['mask'][0] > 0
    pixels = normalization.unit_range(
        batch['image'][0][real].astype(np.float64)) * 255.0
    exact = np.rint(pixels)
    # A pipeline that changed the pixels (augmentation, resizing) would give
    # the reference other images than the trainer's; refuse rather than fit.
    off = np.abs(pixels - exact).max(initial=0.0)
    if off > 0.01:
      raise ValueError('the evaluation pipeline does not hand out the stored '
                       f'pixels (off by up to {off:.3f})')
    images.append(np.clip(exact, 0, 255).astype(np.uint8))
    rows.append(batch['gm'][0][real].astype(np.int32))
  if not images:
    size = data_config.image_size
    return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32)
  return np.concatenate(images), np.concatenate(rows)


class Task:
  """What every task provides; the trainer, `jaxfp.evaluate` and the
  benchmark call nothing else.

  Each task defines:
    headline              (metric, 'lower' | 'higher') pairs: the few
                          figures an evaluation line and a robustness table
                          show
    model                 a Flax module built with axis_name=AXIS
    train_metric_names    names of the per-step scalars `loss` returns
    eval_metric_names     names of the per-batch scalars `eval_outputs`
                          returns
    id_keys               batch keys kept per image for `score`
    example_key           batch key whose distinct values get one picture
    data()                its data module (imported when data is read)
    loss(outputs, batch)          -> (total, terms)        inside pmap
    eval_outputs(outputs, batch)  -> (predictions, terms)  inside pmap
    score(predictions, ids)       -> result dict with 'metrics'   host
    report(result, workdir, step) -> text; writes results.{md,json}
    scalars(result)               -> dict of summary scalars
    meta()                        -> JSON-able facts saved with checkpoints

  and may override the defaults below (iterators, other evaluation splits,
  the checkpoint's meta, CPU presets, work after the final report). A task
  class takes (config, info=None, *, evaluation_only=False); with
  evaluation_only its data may hold out everything (`jaxfp.evaluate`).
  """

  # The config presets sized for a CPU, named by the trainer's projection.
  cpu_presets: tuple[str, ...] = ()

  def eval_splits(self) -> tuple[str, ...]:
    """Other splits the final evaluation also scores (their names are
    `eval_iterator`'s `split`)."""
    return ()

  def use_checkpoint_meta(self, meta: dict) -> None:
    """What `jaxfp.evaluate` hands over from the checkpoint's meta."""
    del meta

  def finish(self, result: dict, workdir: str, step: int) -> str:
    """Work after training and the final report (process 0 only); returns
    text for the console, or ''."""
    del result, workdir, step
    return ''

  def train_iterator(self, **kwargs):
    return self.data().train_iterator(
        self.config.data, self.info,
        augmentation=self.config.get('augment'), **kwargs)

  def eval_iterator(self, **kwargs):
    return self.data().eval_iterator(self.config.data, self.info, **kwargs)


def write_gm_fingerprints(examples, gm_names, workdir: str,
                          step: int) -> None:
  """fingerprints.png: one image of each held-out GM beside its fingerprint.
  `examples` is an evaluation's (images, fingerprints, GM rows), or None."""
  if examples is None or not len(examples[0]):
    return
  images, fingerprints, rows = examples
  plots.panel_grid(
      os.path.join(workdir, 'fingerprints.png'),
      summaries.fingerprint_panels(images, fingerprints),
      [gm_names[r] for r in rows],
      title=f'One image of each held-out GM, step {step}')


def write_results(workdir: str, step: int, header: str, table: str,
                  payload: dict, shown: str | None = None) -> str:
  """results.md (header + table) and results.json (payload + step), each
  written whole or not at all (`files.write_text`): a sweep takes a
  results.json as the sign of a finished run. Returns the text for the
  console: header + `shown` (a shorter table), or header + table."""
  files.write_text(os.path.join(workdir, 'results.md'),
                   f'{header}\n\n{table}\n')
  files.write_json(os.path.join(workdir, 'results.json'),
                   {'step': step, **payload}, indent=2)
  return f'{header}\n\n{table if shown is None else shown}'


class GmFolderTask(Task):
  """A task on a dataset of GM folders (the zoo, the published images): its
  examples are keyed by GM, its data module is `gm_folder_data`."""

  id_keys = ('gm',)
  example_key = 'gm'
  data = staticmethod(gm_folder_data)

  def _split(self, config: ml_collections.ConfigDict,
             info: splits.DataInfo | None,
             evaluation_only: bool) -> splits.DataInfo:
    """`info`, else the split `config.data` asks for; `evaluation_only`
    accepts one that holds out every GM."""
    if info is not None:
      return info
    return self.data().load_info(config.data,
                                 require_train_gms=not evaluation_only)
