"""Detection (real vs fake) and attribution (which source made the image).

Both are FEN + a small classifier head (`models.FingerprintClassifier`):
detection reads the fingerprint, attribution its magnitude spectrum. Trained
on folder-per-class images (`jaxfp.data.classes`), scored on a held-out
split of the same tree. Detection is scored by ROC AUC, average precision and
accuracy at 0.5 of the probability of the 'fake' class
(`jaxfp.core.schema.fake_index`);
attribution by accuracy and the confusion matrix.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from sklearn import metrics as sk_metrics

from jaxfp.core import console
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.models import fields
from jaxfp.report import plots
from jaxfp.report import tables
from jaxfp.tasks import common


# What an evaluation line and a robustness table show, and which way is
# better, by task.
HEADLINES = {
    'detection': (('roc_auc', 'higher'), ('average_precision', 'higher'),
                  ('accuracy', 'higher')),
    'attribution': (('accuracy', 'higher'),),
}


def _data():
  """The tf.data side, imported when data is read: the model, losses and
  scores of a task need no TensorFlow."""
  with console.native_output_hushed():
    from jaxfp.data import classes  # pylint: disable=g-import-not-at-top
  return classes


def cross_entropy(logits, labels, mask, published_sigmoid_ce: bool):
  """Mean softmax cross-entropy over the rows with mask 1, across devices.

  With `published_sigmoid_ce` the softmax is taken of sigmoid(logits), the
  published code's quirk (kept for parity only).
  """
  scores = jax.nn.sigmoid(logits) if published_sigmoid_ce else logits
  per_image = optax.softmax_cross_entropy_with_integer_labels(
      scores, jnp.maximum(labels, 0))
  count = jax.lax.pmean(jnp.sum(mask), common.AXIS)
  # Normalised by the mean count over devices, so the pmean of device
  # gradients is the global-batch mean gradient.
  return jnp.sum(per_image * mask) / jnp.maximum(count, 1.0)


def binary_metrics(is_fake: np.ndarray, fake_score: np.ndarray) -> dict:
  """Accuracy at 0.5, ROC AUC and average precision; fake is positive."""
  is_fake = np.asarray(is_fake, bool)
  out = {'accuracy': float(np.mean((fake_score > 0.5) == is_fake))}
  if len(np.unique(is_fake)) == 2:
    out['roc_auc'] = float(sk_metrics.roc_auc_score(is_fake, fake_score))
    out['average_precision'] = float(sk_metrics.average_precision_score(
        is_fake, fake_score))
  return out


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray,
                       class_names) -> tuple[dict, np.ndarray]:
  guess = np.argmax(probabilities, axis=-1)
  matrix = sk_metrics.confusion_matrix(labels, guess,
                                       labels=range(len(class_names)))
  out = {'accuracy': float(np.mean(guess == labels))}
  for k, name in enumerate(class_names):
    if matrix[k].sum():
      out[f'recall/{name}'] = float(matrix[k, k] / matrix[k].sum())
  return out, matrix


class ClassificationTask(common.Task):
  """Detection or attribution, by config.task."""

  id_keys = ('label',)
  example_key = 'label'
  data = staticmethod(_data)

  @property
  def cpu_presets(self) -> tuple[str, ...]:
    return (f'configs/{self.config.task}.py:cpu',)

  def __init__(self, config: ml_collections.ConfigDict,
               info: splits.ClassInfo | None = None, *,
               evaluation_only: bool = False):
    del evaluation_only  # A file split always has both sides.
    self.config = config
    self.name = config.task
    self.headline = HEADLINES[self.name]
    self.info = info if info is not None else self.data().load_info(
        config.data)
    self.class_names = self.info.class_names
    if self.name == 'detection' and len(self.class_names) != 2:
      raise ValueError(f'detection needs exactly 2 class folders (real, '
                       f'fake), found {list(self.class_names)} in '
                       f'{self.info.root}')
    self.model = fields.classifier(self.name, len(self.class_names),
                                   config.model, axis_name=common.AXIS)
    self.eval_metric_names = ('loss', 'classification')
    self.train_metric_names = (self.eval_metric_names +
                               common.fingerprint_metric_names(config))

  def describe(self) -> str:
    i = self.info
    return (f'{self.name}: classes {list(self.class_names)} in {i.root}; '
            f'{i.num_train_images} training and {i.num_test_images} test '
            f'images; {console.count(len(i.skipped_files), "image")} skipped '
            'as unreadable')

  def _classification(self, outputs, batch):
    ce = cross_entropy(outputs['logits'], batch['label'], batch['mask'],
                       self.config.loss.published_sigmoid_ce)
    return self.config.loss.task_weight * ce

  def loss(self, outputs, batch):
    total, terms = common.fingerprint_terms(outputs, self.config)
    classification = self._classification(outputs, batch)
    terms['classification'] = classification
    return total + classification, terms

  def eval_outputs(self, outputs, batch):
    classification = self._classification(outputs, batch)
    predictions = {'probabilities': jax.nn.softmax(outputs['logits'])}
    return predictions, {'loss': classification,
                         'classification': classification}

  def score(self, predictions: dict, ids: dict) -> dict:
    labels = ids['label']
    probabilities = predictions['probabilities']
    result = {'num_images': int(len(labels)), 'labels': labels,
              'probabilities': probabilities}
    if self.name == 'detection':
      fake = schema_lib.fake_index(self.class_names)
      result.update(is_fake=labels == fake, fake_score=probabilities[:, fake])
      result['metrics'] = binary_metrics(result['is_fake'],
                                         result['fake_score'])
    else:
      result['metrics'], result['confusion'] = multiclass_metrics(
          labels, probabilities, self.class_names)
    return result

  def scalars(self, result: dict) -> dict:
    return {f'heldout/{k}': v for k, v in result['metrics'].items()}

  def report(self, result: dict, workdir: str, step: int) -> str:
    metrics = result['metrics']
    lines = [tables.markdown(['metric', 'value'],
                             [(k, f'{v:.4f}') for k, v in metrics.items()])]
    payload = {'num_images': result['num_images'], 'metrics': metrics,
               'class_names': list(self.class_names)}
    if self.name == 'detection':
      plots.roc_curve(os.path.join(workdir, 'roc.png'), result['is_fake'],
                      result['fake_score'],
                      title=f'Detection ROC, step {step}')
      pictures = 'roc.png'
    else:
      matrix = result['confusion']
      plots.confusion_matrix(os.path.join(workdir, 'confusion.png'), matrix,
                             self.class_names,
                             title=f'Attribution, step {step}')
      payload['confusion_matrix'] = matrix.tolist()
      lines += ['', 'Confusion matrix (rows: true, columns: predicted)', '',
                tables.markdown(
                    ['true \\ predicted', *self.class_names],
                    [[name, *(int(v) for v in row)]
                     for name, row in zip(self.class_names, matrix)])]
      pictures = 'confusion.png'
    header = (f'Held-out {self.name} metrics at step {step} on '
              f'{result["num_images"]} images ({pictures} in the workdir)')
    return common.write_results(workdir, step, header, '\n'.join(lines),
                                payload)

  def meta(self) -> dict:
    return {'task': self.name, 'class_names': list(self.class_names)}


TASKS = dict.fromkeys(HEADLINES, ClassificationTask)
