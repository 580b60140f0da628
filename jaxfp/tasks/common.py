"""Pieces every task shares: the fingerprint constraints, data iterators
and result files."""

from __future__ import annotations

import os

import ml_collections

from jaxfp.core import console
from jaxfp.core import distributed
from jaxfp.core import files
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
  """The tf.data side of datasets of GM folders (`jaxfp.data.parsing`),
  imported when data is read: the model, losses and scores of a task need
  no TensorFlow. The parsing and source tasks read the same data."""
  with console.native_output_hushed():
    from jaxfp.data import parsing  # pylint: disable=g-import-not-at-top
  return parsing


class Iterators:
  """`train_iterator` and `eval_iterator` of a task: those of its data
  module (`data()`, imported when data is read) on its config and info."""

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


class GmFolderTask(Iterators):
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
