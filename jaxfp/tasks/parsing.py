"""Model parsing: FEN + PN predict a generator's hyperparameters.

Trained on the training GMs' images, scored on held-out GMs against the
paper's random-ground-truth baseline (`jaxfp.report.metrics`).
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfp import models
from jaxfp.core import console
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.losses import parsing as parsing_losses
from jaxfp.models import fields
from jaxfp.report import metrics as parsing_metrics
from jaxfp.report import plots
from jaxfp.report import summaries
from jaxfp.tasks import common

PARSING_TERMS = ('continuous', 'discrete', 'coarse', 'fine')


def create_model(config: ml_collections.ConfigDict, schema: schema_lib.Schema,
                 axis_name: str | None = common.AXIS
                 ) -> models.FingerprintParser:
  return fields.parser(schema, config.model, axis_name=axis_name)


def _data():
  """The tf.data side, imported when data is read: the model, losses and
  scores of a task need no TensorFlow."""
  with console.native_output_hushed():
    from jaxfp.data import parsing  # pylint: disable=g-import-not-at-top
  return parsing


def masked_labels(batch):
  """Padding rows of an eval batch marked missing, so losses ignore them."""
  real = batch['mask'] > 0
  def hide(x, missing):
    shape = real.shape + (1,) * (x.ndim - real.ndim)
    return jnp.where(real.reshape(shape), x, missing)
  return {**batch,
          'continuous': hide(batch['continuous'], jnp.nan),
          'discrete': hide(batch['discrete'], schema_lib.MISSING),
          'coarse': hide(batch['coarse'], schema_lib.MISSING),
          'fine': hide(batch['fine'], schema_lib.MISSING)}


class ParsingTask(common.Iterators):
  """FEN + PN on a dataset of GM folders with a ground-truth table."""

  headline = (('continuous_l1', 'lower'), ('discrete_accuracy', 'higher'),
              ('loss_auc', 'higher'))
  id_keys = ('gm',)
  example_key = 'gm'
  data = staticmethod(_data)

  def __init__(self, config: ml_collections.ConfigDict,
               info: splits.DataInfo | None = None):
    self.config = config
    self.info = info if info is not None else self.data().load_info(
        config.data)
    gt = self.info.ground_truth
    self.schema = gt.schema
    self.class_weights = parsing_losses.parsing_class_weights(
        gt.select(self.info.train_gms))
    self.model = create_model(config, self.schema)
    self.eval_metric_names = ('loss',) + tuple(
        f'parsing_{t}' for t in PARSING_TERMS)
    self.train_metric_names = (self.eval_metric_names +
                               common.fingerprint_metric_names(config))

  def describe(self) -> str:
    i = self.info
    return (f'training on {len(i.train_gms)} GMs ({i.num_train_images} '
            f'images), holding out {len(i.test_gms)} GMs '
            f'({i.num_test_images} images: {", ".join(i.test_gms)}); '
            f'{len(i.skipped_files)} images skipped as unreadable at build '
            'time')

  def _parsing_loss(self, outputs, batch):
    loss = self.config.loss
    return parsing_losses.parsing_loss(
        outputs, batch, self.class_weights, self.schema,
        head_weight=loss.head_weight, hierarchical=loss.hierarchical,
        published_sigmoid_ce=loss.published_sigmoid_ce, axis_name=common.AXIS,
        continuous=loss.continuous)

  def loss(self, outputs, batch):
    """Total loss and its named terms for one device's share of the batch."""
    fp_total, terms = common.fingerprint_terms(outputs, self.config)
    parse_total, parse_terms = self._parsing_loss(outputs, batch)
    terms.update({f'parsing_{k}': v for k, v in parse_terms.items()})
    return fp_total + parse_total, terms

  def eval_outputs(self, outputs, batch):
    """Probabilities of every head, and the parsing loss."""
    loss, terms = self._parsing_loss(outputs, masked_labels(batch))
    predictions = parsing_losses.head_probabilities(
        outputs, self.schema.fine_to_coarse,
        hierarchical=self.config.loss.hierarchical)
    return predictions, {'loss': loss,
                         **{f'parsing_{k}': v for k, v in terms.items()}}

  def score(self, predictions: dict, ids: dict) -> dict:
    """Held-out metrics and the random-ground-truth baseline."""
    rows = ids['gm']
    gt = self.info.ground_truth
    model_metrics = parsing_metrics.parsing_metrics(
        predictions, parsing_metrics.Labels.of(gt, rows), gt.schema)
    base_mean, base_std = parsing_metrics.random_baseline(
        predictions, gt, rows, num_shuffles=self.config.num_baseline_shuffles,
        seed=self.config.seed)
    return {'metrics': model_metrics, 'baseline_mean': base_mean,
            'baseline_std': base_std, 'num_images': int(len(rows)),
            'num_gms': int(len(np.unique(rows)))}

  def scalars(self, result: dict) -> dict:
    out = {f'heldout/{k}': v for k, v in result['metrics'].items()}
    out.update({f'baseline/{k}': v
                for k, v in result['baseline_mean'].items()})
    return out

  def report(self, result: dict, workdir: str, step: int) -> str:
    """results.md / .json, fingerprints.png and baseline_bars.png."""
    metrics, mean, std = (result['metrics'], result['baseline_mean'],
                          result['baseline_std'])
    shuffles = self.config.num_baseline_shuffles
    gms = result.get('num_gms', len(self.info.test_gms))
    header = (f'Held-out parsing metrics at step {step}: {gms} GMs never seen '
              f'in training, {result["num_images"]} images. Baseline: the '
              'same predictions scored against the ground truth with each '
              f'column shuffled across these GMs (mean ± std over {shuffles} '
              'shuffles). Bold: better than the baseline mean.')
    table = parsing_metrics.grouped_tables(metrics, mean, std, self.schema)
    self._pictures(result, workdir, step)
    return common.write_results(workdir, step, header, table, {
        'num_images': result['num_images'], 'num_gms': gms,
        'test_gms': list(self.info.test_gms),
        'num_baseline_shuffles': shuffles, 'metrics': metrics,
        'baseline_mean': mean, 'baseline_std': std})

  def _pictures(self, result: dict, workdir: str, step: int) -> None:
    examples = result.get('examples')
    if examples is not None and len(examples[0]):
      images, fingerprints, rows = examples
      names = [self.info.ground_truth.gm_names[r] for r in rows]
      plots.panel_grid(
          os.path.join(workdir, 'fingerprints.png'),
          summaries.fingerprint_panels(images, fingerprints), names,
          title=f'One image of each held-out GM, step {step}')
    s = self.schema
    groups = [('aggregates (continuous_l1: lower is better)',
               [p for p, _ in parsing_metrics.HEADLINE]),
              ('continuous: L1 error (lower is better)',
               [f'continuous_l1/{n}' for n in s.continuous]),
              ('discrete: accuracy',
               [f'discrete_accuracy/{n}' for n in s.discrete_names]),
              ('discrete: macro F1',
               [f'discrete_f1/{n}' for n in s.discrete_names])]
    levels = {n: 'coarse' for n in s.coarse}
    levels.update({n: 'fine' for n in s.fine})
    for metric, what in (('loss_auc', 'AUC'), ('loss_f1', 'F1')):
      groups.append((f'loss types: {what}',
                     [f'{metric}/{n}' for n in s.coarse + s.fine]))
    labels = {f'{m}/{n}': f'{n} ({level})' for n, level in levels.items()
              for m in ('loss_auc', 'loss_f1')}
    plots.baseline_bars(
        os.path.join(workdir, 'baseline_bars.png'), groups,
        result['metrics'], result['baseline_mean'], result['baseline_std'],
        labels=labels, title=f'Held-out parsing metrics, step {step}')

  def meta(self) -> dict:
    return {'task': 'parsing', 'train_gms': list(self.info.train_gms),
            'test_gms': list(self.info.test_gms),
            'ground_truth': self.info.ground_truth.to_dict(),
            'schema': self.schema.to_dict()}


TASKS = {'parsing': ParsingTask}
