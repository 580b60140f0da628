"""Model parsing: FEN + PN predict a generator's hyperparameters.

Trained on the training GMs' images, scored on held-out GMs and on the
closed set (held-back images of training GMs) against two baselines, the
paper's random ground truth and the training prior, with z-scores
(`jaxfp.report.metrics`, `jaxfp.report.results`).
"""

from __future__ import annotations

import os

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfp import models
from jaxfp.core import console
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.inference import answer as answer_lib
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.losses import parsing as parsing_losses
from jaxfp.models import fields
from jaxfp.report import metrics as parsing_metrics
from jaxfp.report import plots
from jaxfp.report import results as results_lib
from jaxfp.tasks import answering
from jaxfp.tasks import common

PARSING_TERMS = ('continuous', 'discrete', 'coarse', 'fine')


def create_model(config: ml_collections.ConfigDict, schema: schema_lib.Schema,
                 axis_name: str | None = common.AXIS
                 ) -> models.FingerprintParser:
  return fields.parser(schema, config.model, axis_name=axis_name)


def masked_labels(batch):
  """Padding rows of an eval batch marked missing, so losses ignore them."""
  real = batch['mask'] > 0
  def hide(x, missing):
    shape = real.shape + (1,) * (x.ndim - real.ndim)
    return jnp.where(real.reshape(shape), x, missing)
  return {**batch, 'continuous': hide(batch['continuous'], jnp.nan),
          **{k: hide(batch[k], schema_lib.MISSING)
             for k in ('discrete', 'coarse', 'fine')}}


class ParsingTask(common.GmFolderTask):
  """FEN + PN on a dataset of GM folders with a ground-truth table."""

  headline = (('continuous_l1', 'lower'), ('discrete_accuracy', 'higher'),
              ('loss_auc', 'higher'))
  cpu_presets = ('configs/fen.py:cpu (1,500 steps)',
                 'configs/fen.py:cpu_fen (FEN-5 + conv PN, 1,500 steps)')

  def __init__(self, config: ml_collections.ConfigDict,
               info: splits.DataInfo | None = None, *,
               evaluation_only: bool = False):
    """`evaluation_only`: accept a split that holds out every GM."""
    self.config = config
    answer = config.get('answer')
    if answer is not None and answer.enabled and answer.get('photo_dir'):
      answering.photo_files(answer.photo_dir)  # Named now, not after training.
    self.info = self._split(config, info, evaluation_only)
    gt = self.info.ground_truth
    self.schema = gt.schema
    # With no training GM (an evaluation of unseen data) the weights only
    # weigh the evaluation loss; every GM's are as good as any.
    self.class_weights = parsing_losses.parsing_class_weights(
        gt.select(self.info.train_gms or self.info.test_gms))
    # The training GMs' ground truth: the training prior's source, and the
    # table whose normalisation the continuous heads learned.
    # `use_checkpoint_meta` puts the checkpoint's own in its place.
    self.train_truth = (gt.select(self.info.train_gms)
                        if self.info.train_gms else None)
    self.train_truth_source = 'the training GMs of this split'
    self.model = create_model(config, self.schema)
    self.eval_metric_names = ('loss',) + tuple(
        f'parsing_{t}' for t in PARSING_TERMS)
    self.train_metric_names = (self.eval_metric_names +
                               common.fingerprint_metric_names(config))

  def describe(self) -> str:
    i = self.info
    return (f'training on {len(i.train_gms)} GMs ({i.num_train_images} '
            f'images; {i.num_closed_images} more held back as the closed '
            f'set), holding out {len(i.test_gms)} GMs '
            f'({i.num_test_images} images: {", ".join(i.test_gms)}); '
            f'{console.count(len(i.skipped_files), "image")} skipped as '
            'unreadable at build time')

  def eval_splits(self) -> tuple[str, ...]:
    """Splits scored after the held-out one at the end of a run."""
    return ('closed_set',) if self.info.num_closed_images else ()

  def use_checkpoint_meta(self, meta: dict) -> None:
    """Takes the training GMs' ground truth from a checkpoint's meta (what
    it trained on, also when this dataset is another one); kept as it is
    when the meta has none or another schema."""
    saved, names = meta.get('ground_truth'), meta.get('train_gms')
    if not saved or not names:
      return
    truth = schema_lib.GroundTruth.from_dict(saved)
    if truth.schema != self.schema:
      return
    self.train_truth = truth.select(names)
    self.train_truth_source = (f"the checkpoint's {len(names)} training GMs")

  def _parsing_loss(self, outputs, batch):
    loss = self.config.loss
    def one(outputs):
      return parsing_losses.parsing_loss(
          outputs, batch, self.class_weights, self.schema,
          head_weight=loss.head_weight, hierarchical=loss.hierarchical,
          published_sigmoid_ce=loss.published_sigmoid_ce,
          axis_name=common.AXIS, continuous=loss.continuous)
    if 'members' not in outputs:
      return one(outputs)
    # An ensemble in training: each member on its own loss, so that they
    # stay apart; the mean over members keeps the loss's scale.
    return jax.tree_util.tree_map(lambda x: x.mean(axis=0),
                                  jax.vmap(one)(outputs['members']))

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

  def _in_table_units(self, predictions: dict) -> dict:
    """Continuous predictions in the units of this dataset's table: the
    heads learned the training table's normalisation, and another table
    (another zoo) normalises its columns over its own GMs."""
    gt, train = self.info.ground_truth, self.train_truth
    if train is None or np.array_equal(train.continuous_range,
                                       gt.continuous_range, equal_nan=True):
      return predictions
    return {**predictions, 'continuous': parsing_metrics.renormalize(
        predictions['continuous'], train.continuous_range,
        gt.continuous_range)}

  def score(self, predictions: dict, ids: dict) -> dict:
    """Metrics, both baselines and z-scores (`metrics.score_split`), plus
    the per-image predictions for predictions.npz."""
    rows = ids['gm']
    gt = self.info.ground_truth
    predictions = self._in_table_units(predictions)
    prior = None
    if self.train_truth is not None:
      prior = parsing_metrics.prior_predictions(
          parsing_metrics.train_prior(self.train_truth, gt.continuous_range),
          len(rows))
    result = parsing_metrics.score_split(
        predictions, rows, gt, prior=prior,
        num_shuffles=self.config.num_baseline_shuffles, seed=self.config.seed)
    result.update(predictions=predictions, rows=rows, prior=prior)
    return result

  def scalars(self, result: dict) -> dict:
    out = {f'heldout/{k}': v for k, v in result['metrics'].items()}
    out.update({f'baseline/{k}': v
                for k, v in result['baseline_mean'].items()})
    out['heldout/significant'] = result['significance']['significant']
    if result.get('parsed'):
      out['heldout/parsed'] = result['parsed']['parsed']
    return out

  def _notes(self, result: dict) -> tuple[str, str]:
    """What the held-out and closed-set tables cannot show, and why."""
    if self.train_truth is None:
      held = ('no train prior: no training GM in this split and no ground '
              'truth of training GMs in the checkpoint')
    else:
      held = f'train prior from {self.train_truth_source}'
    closed = ''
    if result.get('closed_set') is None:
      if not self.info.train_gms:
        closed = 'none: no GM of this split is a training GM'
      elif not self.info.closed_set_fraction:
        closed = ('none: config.data.closed_set_fraction is 0 (every image '
                  'of the training GMs was trained on)')
      else:
        closed = 'none: no image of a training GM was held back'
    return held, closed

  def report(self, result: dict, workdir: str, step: int) -> str:
    """results.md / .json, predictions.npz, fingerprints.png and
    baseline_bars.png."""
    shuffles = self.config.num_baseline_shuffles
    closed = result.get('closed_set')
    held_note, closed_note = self._notes(result)
    header = (f'Parsing metrics at step {step}: held out, {result["num_gms"]} '
              f'GMs never seen in training ({result["num_images"]} images)'
              + ('' if closed is None else
                 f'; closed set, {closed["num_images"]} held-back images of '
                 f'{closed["num_gms"]} training GMs') + '.')
    splits = [('held out', result, held_note),
              ('closed set', closed, closed_note)]
    table = results_lib.report(splits, self.schema, shuffles)
    # The console gets the summary and the deciding metrics; every metric
    # of both sets is in results.md.
    shown = (results_lib.report(splits, self.schema, shuffles, full=False)
             + '\n\nEvery metric of both sets: '
             + os.path.join(workdir, 'results.md'))
    self._pictures(result, workdir, step)
    gt = self.info.ground_truth
    results_lib.write_predictions(
        os.path.join(workdir, results_lib.PREDICTIONS), result['predictions'],
        result['rows'], gt, result['prior'], step)
    prior_values = None
    if self.train_truth is not None:
      prior_values = parsing_metrics.prior_values(
          parsing_metrics.train_prior(self.train_truth, gt.continuous_range),
          self.schema)
    closed_json = results_lib.json_split(closed)
    if closed_json is not None:
      closed_json.update(gms=list(self.info.closed_gms),
                         fraction=self.info.closed_set_fraction)
    return common.write_results(workdir, step, header, table, {
        'num_images': result['num_images'], 'num_gms': result['num_gms'],
        'test_gms': list(self.info.test_gms),
        'num_baseline_shuffles': shuffles,
        **{k: v for k, v in results_lib.json_split(result).items()
           if k not in ('num_images', 'num_gms')},
        'train_prior_values': prior_values,
        'notes': {'held_out': held_note, 'closed_set': closed_note},
        'closed_set': closed_json,
        'predictions_file': results_lib.PREDICTIONS}, shown=shown)

  def finish(self, result: dict, workdir: str, step: int) -> str:
    """Fits the per-image answer (`jaxfp.tasks.answering`), saves it beside
    the checkpoints and shows it on a few held-out images and photographs,
    through the predict command's own path."""
    del step
    c = self.config.get('answer')
    if (c is None or not c.enabled or not self.info.train_gms or
        not self.info.test_gms):
      return ''
    if jax.process_count() > 1:
      # Process 0 alone would read a shard and load the checkpoint while the
      # others leave: Orbax's restore waits for them. One process refits it.
      logging.warning('The per-image answer is fitted by one process: launch '
                      'the same command as one process on the finished run '
                      'to fit it.')
      return ''
    with console.quietly('Fitting the per-image answer: detector, '
                         'in-distribution score, calibration'):
      # Read once: the answer is fitted on them, and a few are shown.
      held_out = common.read_images(self.config.data, self.info, 'test')
      answerer = answering.fit(self.config, self.info, result, held_out[0])
      answer_lib.save(answerer, workdir)
      folder = answering.write_examples(self.config, self.info, workdir,
                                        held_out)
    records, _ = predict.predict(network.load(workdir), [folder],
                                 progress=False, answerer=answerer)
    shown = len(answerer.identifiable)
    return '\n'.join(
        [f'The per-image answer ({shown} hyperparameters identifiable; '
         f'python -m jaxfp.predict --checkpoint={workdir} FILES), on '
         'held-out generators and photographs never trained on:'] +
        [predict.format_record('parsing', r) for r in records])

  def _pictures(self, result: dict, workdir: str, step: int) -> None:
    common.write_gm_fingerprints(result.get('examples'),
                                 self.info.ground_truth.gm_names, workdir,
                                 step)
    s = self.schema
    groups = [('aggregates (continuous_l1: lower is better)',
               [p for p, _ in parsing_metrics.HEADLINE]),
              ('continuous: L1 error (lower is better)',
               [f'continuous_l1/{n}' for n in s.continuous]),
              ('discrete: accuracy',
               [f'discrete_accuracy/{n}' for n in s.discrete_names]),
              ('discrete: macro F1',
               [f'discrete_f1/{n}' for n in s.discrete_names])]
    levels = [(n, 'coarse') for n in s.coarse] + [(n, 'fine') for n in s.fine]
    for metric, what in (('loss_auc', 'AUC'), ('loss_f1', 'F1')):
      groups.append((f'loss types: {what}',
                     [f'{metric}/{n}' for n in s.coarse + s.fine]))
    labels = {f'{m}/{n}': f'{n} ({level})' for n, level in levels
              for m in ('loss_auc', 'loss_f1')}
    plots.baseline_bars(
        os.path.join(workdir, 'baseline_bars.png'), groups,
        result['metrics'], result['baseline_mean'], result['baseline_std'],
        labels=labels, title=f'Held-out parsing metrics, step {step}',
        prior=result.get('train_prior'))

  def meta(self) -> dict:
    return {'task': 'parsing', 'train_gms': list(self.info.train_gms),
            'test_gms': list(self.info.test_gms),
            'ground_truth': self.info.ground_truth.to_dict(),
            'schema': self.schema.to_dict()}


TASKS = {'parsing': ParsingTask}
