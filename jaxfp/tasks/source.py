"""Source embedding: which images come from the same generator
(docs/embeddings.md).

Trained on the training GMs' images with the generator's identity as the
label (a margin softmax over one proxy per training GM, optionally plus a
supervised contrastive term), read through the model-parsing pipeline.
Scored on the held-out GMs, never seen: verification EER, grouping (ARI,
NMI) with the number of groups given and estimated, open-set AUROC. Their
embeddings also calibrate the grouping threshold and open-set probability
(`jaxfp.inference.sources.calibrate`), saved as `source_calibration.json`
beside the checkpoints for `jaxfp.cluster`, `gallery` and `predict`.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfp.data import splits
from jaxfp.inference import network
from jaxfp.inference import sources as sources_lib
from jaxfp.losses import embedding as embedding_losses
from jaxfp.models import fields
from jaxfp.report import sources as source_scores
from jaxfp.report import tables
from jaxfp.tasks import common


class SourceTask(common.GmFolderTask):
  """A source embedding on a dataset of GM folders."""

  headline = (('eer', 'lower'), ('ari_estimated_k', 'higher'),
              ('open_set_auroc', 'higher'))
  cpu_presets = ('configs/source.py:cpu',)
  eval_metric_names = ('loss',)

  def __init__(self, config: ml_collections.ConfigDict,
               info: splits.DataInfo | None = None, *,
               evaluation_only: bool = False):
    """`evaluation_only`: accept a split that holds out every GM."""
    self.config = config
    self.info = self._split(config, info, evaluation_only)
    if len(self.info.test_gms) < 2:
      raise ValueError(
          f'the source task holds out {len(self.info.test_gms)} GM(s); it '
          'needs at least 2 to calibrate grouping and open-set scores (set '
          'config.data.num_test_gms or test_gms)')
    gt = self.info.ground_truth
    # GM row -> index of its proxy; held-out GMs have none (-1).
    index = np.full(len(gt.gm_names), -1, np.int32)
    for i, gm in enumerate(self.info.train_gms):
      index[gt.index(gm)] = i
    self.source_index = index
    self.model = fields.embedder(config.model,
                                 num_sources=len(self.info.train_gms),
                                 axis_name=common.AXIS)
    self.train_metric_names = (
        ('loss', 'margin_softmax', 'supervised_contrastive') +
        common.fingerprint_metric_names(config))

  def describe(self) -> str:
    i = self.info
    return (f'training a source embedding on {len(i.train_gms)} GMs '
            f'({i.num_train_images} images), calibrating and scoring on '
            f'{len(i.test_gms)} held-out GMs ({i.num_test_images} images)')

  def _labels(self, batch):
    rows = batch['gm']
    labels = jnp.asarray(self.source_index)[jnp.maximum(rows, 0)]
    return jnp.where((rows >= 0) & (batch['mask'] > 0), labels, -1)

  def loss(self, outputs, batch):
    c = self.config.loss
    labels = self._labels(batch)
    margin = embedding_losses.margin_softmax(
        outputs['cosines'], labels, margin=c.margin, scale=c.scale)
    contrastive = embedding_losses.supervised_contrastive(
        outputs['embedding'], labels, temperature=c.temperature)
    fp_total, terms = common.fingerprint_terms(outputs, self.config)
    total = (c.margin_weight * margin + c.contrastive_weight * contrastive +
             fp_total)
    terms.update(margin_softmax=margin, supervised_contrastive=contrastive)
    return total, terms

  def eval_outputs(self, outputs, batch):
    """The embeddings; the loss is the contrastive loss among held-out GMs
    (they have no proxy)."""
    rows = jnp.where(batch['mask'] > 0, batch['gm'], -1)
    loss = embedding_losses.supervised_contrastive(
        outputs['embedding'], rows, temperature=self.config.loss.temperature)
    return {'embedding': outputs['embedding']}, {'loss': loss}

  def score(self, predictions: dict, ids: dict) -> dict:
    unit = np.asarray(predictions['embedding'], np.float64)
    rows = np.asarray(ids['gm'])
    return score_embeddings(unit, rows, seed=self.config.seed)

  def scalars(self, result: dict) -> dict:
    return {f'heldout/{k}': v for k, v in result['metrics'].items()}

  def report(self, result: dict, workdir: str, step: int) -> str:
    calibration = dict(result['calibration'], step=step,
                       test_gms=list(self.info.test_gms))
    sources_lib.save_calibration(workdir, calibration)
    m = result['metrics']
    header = (f'Source embedding at step {step}, on {result["num_gms"]} '
              f'held-out GMs ({result["num_images"]} images) that the network '
              'never trained on; they also calibrate the grouping threshold '
              f'(cosine distance {calibration["group_threshold"]:.2f}) and '
              'the open-set probability, so the estimated-k figures are '
              'fitted on these GMs (unseen generators: jaxfp.embeddings).')
    table = tables.markdown(['metric', 'value'], [
        [k, f'{v:.3f}' if isinstance(v, float) else v] for k, v in m.items()])
    common.write_gm_fingerprints(result.get('examples'),
                                 self.info.ground_truth.gm_names, workdir,
                                 step)
    return common.write_results(workdir, step, header, table, {
        'num_images': result['num_images'], 'num_gms': result['num_gms'],
        'test_gms': list(self.info.test_gms), 'metrics': m,
        'calibration': calibration})

  def meta(self) -> dict:
    return {'task': network.SOURCE_TASK, 'train_gms': list(self.info.train_gms),
            'test_gms': list(self.info.test_gms),
            'num_sources': len(self.info.train_gms)}


def score_embeddings(unit: np.ndarray, labels: np.ndarray, *,
                     seed: int = 0) -> dict:
  """Held-out scores and the calibration fitted on the same embeddings."""
  calibration = sources_lib.calibrate(unit, labels, seed=seed)
  k = len(np.unique(labels))
  given = source_scores.grouping(labels, sources_lib.group_into(unit, k))
  estimated = source_scores.grouping(labels, sources_lib.group_by_threshold(
      unit, calibration['group_threshold']))
  verification = calibration['verification']
  metrics = {
      'eer': verification['eer'], 'pair_auc': verification['pair_auc'],
      'ari_given_k': given['ari'], 'nmi_given_k': given['nmi'],
      'ari_estimated_k': estimated['ari'], 'nmi_estimated_k': estimated['nmi'],
      'groups_estimated': estimated['num_groups'],
      'open_set_auroc': calibration['open_set']['auroc']}
  return {'metrics': metrics, 'calibration': calibration,
          'num_images': int(len(labels)), 'num_gms': int(k)}


TASKS = {'source': SourceTask}
