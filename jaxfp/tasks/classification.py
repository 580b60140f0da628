"""Detection (real vs fake) and attribution (which source made the image).

Both are FEN + a small classifier head (`models.FingerprintClassifier`):
detection reads the fingerprint, attribution its magnitude spectrum. Trained
on folder-per-class images (`jaxfp.class_pipeline`), scored on a held-out
split of the same tree. Detection is scored by ROC AUC, average precision and
accuracy at 0.5 of the probability of the 'fake' class (`fake_index`);
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

from jaxfp import class_pipeline
from jaxfp import models
from jaxfp import plots
from jaxfp.tasks import common


def create_model(config: ml_collections.ConfigDict, num_classes: int,
                 axis_name: str | None = common.AXIS):
  m = config.model
  head_channels = m.get('head_channels')
  return models.FingerprintClassifier(
      task=config.task, num_classes=num_classes, fen_depth=m.fen_depth,
      fen_width=m.fen_width, dropout_rate=m.dropout_rate,
      head_channels=tuple(head_channels) if head_channels else None,
      head_hidden=m.get('head_hidden', models.heads.HIDDEN),
      dtype=jnp.dtype(m.dtype), axis_name=axis_name)


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


def fake_index(class_names) -> int:
  """Which of two classes is the generated one.

  Class folders sort by name, so 'fake' comes before 'real': the class named
  'fake', else the one not named 'real', else (published order) 1.
  """
  names = [n.lower() for n in class_names]
  if 'fake' in names:
    return names.index('fake')
  if 'real' in names and len(names) == 2:
    return 1 - names.index('real')
  return 1


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


class ClassificationTask:
  """Detection or attribution, by config.task."""

  id_keys = ('label',)
  example_key = 'label'

  def __init__(self, config: ml_collections.ConfigDict, info=None):
    self.config = config
    self.name = config.task
    self.info = info if info is not None else class_pipeline.load_info(
        config.data)
    self.class_names = self.info.class_names
    if self.name == 'detection' and len(self.class_names) != 2:
      raise ValueError(f'detection needs exactly 2 class folders (real, '
                       f'fake), found {list(self.class_names)} in '
                       f'{self.info.root}')
    self.model = create_model(config, len(self.class_names))
    self.eval_metric_names = ('loss', 'classification')
    self.train_metric_names = (self.eval_metric_names +
                               common.fingerprint_metric_names(config))

  def describe(self) -> str:
    i = self.info
    return (f'{self.name}: classes {list(self.class_names)} in {i.root}; '
            f'{i.num_train_images} training and {i.num_test_images} test '
            f'images; {len(i.skipped_files)} images skipped as unreadable')

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

  def train_iterator(self, **kwargs):
    return class_pipeline.train_iterator(
        self.config.data, self.info,
        augmentation=self.config.get('augment'), **kwargs)

  def eval_iterator(self, **kwargs):
    return class_pipeline.eval_iterator(self.config.data, self.info,
                                        **kwargs)

  def score(self, predictions: dict, ids: dict) -> dict:
    labels = ids['label']
    probabilities = predictions['probabilities']
    result = {'num_images': int(len(labels)), 'labels': labels,
              'probabilities': probabilities}
    if self.name == 'detection':
      fake = fake_index(self.class_names)
      result['is_fake'] = labels == fake
      result['fake_score'] = probabilities[:, fake]
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
    lines = ['| metric | value |', '|---|---|']
    lines += [f'| {k} | {v:.4f} |' for k, v in metrics.items()]
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
                '| true \\ predicted | ' + ' | '.join(self.class_names) + ' |',
                '|---' * (len(self.class_names) + 1) + '|']
      lines += [f'| {name} | ' + ' | '.join(str(int(v)) for v in row) + ' |'
                for name, row in zip(self.class_names, matrix)]
      pictures = 'confusion.png'
    header = (f'Held-out {self.name} metrics at step {step} on '
              f'{result["num_images"]} images ({pictures} in the workdir)')
    return common.write_results(workdir, step, header, '\n'.join(lines),
                                payload)

  def meta(self) -> dict:
    return {'task': self.name, 'class_names': list(self.class_names)}
