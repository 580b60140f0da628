"""One honest answer per image from a parsing run: is it generated, is it
inside what the parser knows, and only then the calibrated parse.

Fitted at the end of training (`fit`, by the parsing task) and saved as
`<workdir>/answer.npz` (`save`, `load`); `predict.answered` applies it. Its
parts: the detector (`fit_on_images`, `p_generated`), the in-distribution
p-value (`ood_p_value`), temperatures and conformal half-widths
(`jaxfp.inference.calibration`) and the identifiable hyperparameters; what
each is fitted on and why, and what they measured: docs/answers.md. An
image judged real (P(generated) below `threshold`) or outside what the
parser knows gets no parse and the reason why (`decide`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxfp.core import files
from jaxfp.core import image_features
from jaxfp.data import perturbations
from jaxfp.inference import calibration
from jaxfp.models import parsing_network as parsing_model

FILENAME = 'answer.npz'
# Coverage of the continuous intervals.
COVERAGE = 0.9


class AnswerError(ValueError):
  """An answer file that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Answerer:
  """Everything `answer` needs; arrays are numpy."""
  image_size: int
  pool: int
  detector_mean: np.ndarray  # [e], of `detector_features`.
  detector_std: np.ndarray  # [e]
  detector: dict  # Logistic regression: 'w' [e], 'b' [].
  feature_mean: np.ndarray  # [d], of `features` (the side features).
  feature_std: np.ndarray  # [d]
  ood_mean: np.ndarray  # [d], standardised units.
  ood_precision: np.ndarray  # [d, d]
  ood_reference: np.ndarray  # Held-out GM images' distances, sorted.
  ood_alpha: float
  threshold: float
  temperatures: dict  # Discrete or loss-type name -> T.
  half_widths: dict  # Continuous name -> half-width in [0, 1] units.
  coverage: float
  identifiable: tuple  # Names of the hyperparameters parsed when held out.


# ----------------------------------------------------------- features ----


@functools.lru_cache(maxsize=4)
def _features_fn(pool: int):
  return jax.jit(lambda unit: parsing_model.side_vector(unit, pool=pool))


def features(unit: np.ndarray, pool: int = 16, chunk: int = 1024
             ) -> np.ndarray:
  """Side features of images in [0, 1] (float [N, s, s, 3] or uint8)."""
  unit = np.asarray(unit)
  if unit.dtype == np.uint8:
    unit = unit.astype(np.float32) / 255.0
  fn = _features_fn(pool)
  out = [np.asarray(fn(jnp.asarray(unit[i:i + chunk], jnp.float32)))
         for i in range(0, len(unit), chunk)]
  return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def augment(images: np.ndarray, rng: np.random.Generator, prob: float,
            resize_prob: float) -> np.ndarray:
  """uint8 images, each blurred and JPEG-compressed (CNNDetection's
  augmentation, each with `prob`) and, with `resize_prob`, resized down by
  a factor in [1, 2.5] and back up: what sharing does to an image."""
  out = np.empty_like(images)
  for i, image in enumerate(images):
    image = perturbations.cnndetection(image, rng, prob)
    if rng.random() < resize_prob:
      image = perturbations.resize(image, 1.0 / rng.uniform(1.0, 2.5))
    out[i] = image
  return out


# ----------------------------------------------------------- detector ----


def detector_features(images: np.ndarray) -> np.ndarray:
  """`core.image_features` of uint8 images [N, s, s, 3]."""
  return image_features.features(np.asarray(images, np.uint8))


def fit_detector(x: np.ndarray, is_generated: np.ndarray, *,
                 c: float = 1.0) -> dict:
  """Logistic-regression weights for standardised features `x` [N, e] and
  0/1 labels (scikit-learn, L2 penalty `c`)."""
  # Imported here: fitting needs scikit-learn, applying does not.
  from sklearn import linear_model  # pylint: disable=g-import-not-at-top
  model = linear_model.LogisticRegression(C=c, max_iter=5000).fit(
      x, is_generated)
  return {'w': model.coef_[0].astype(np.float64),
          'b': np.asarray(model.intercept_[0], np.float64)}


def probability(detector: dict, mean: np.ndarray, std: np.ndarray,
                feats: np.ndarray) -> np.ndarray:
  """The logistic regression's P(generated) of raw features [N, e]."""
  z = ((np.asarray(feats, np.float64) - mean) / std) @ detector['w']
  return 1.0 / (1.0 + np.exp(-(z + detector['b'])))


def p_generated(answerer: Answerer, detector_feats: np.ndarray
                ) -> np.ndarray:
  return probability(answerer.detector, answerer.detector_mean,
                     answerer.detector_std, detector_feats)


def fit_on_images(generated: np.ndarray, real: np.ndarray, *,
                  augment_prob: float = 0.0, resize_prob: float = 0.0,
                  seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
  """A detector fitted on uint8 images: (weights, mean, std)."""
  rng = np.random.default_rng(seed)
  if augment_prob or resize_prob:
    generated = augment(generated, rng, augment_prob, resize_prob)
    real = augment(real, rng, augment_prob, resize_prob)
  x = np.concatenate([detector_features(generated),
                      detector_features(real)])
  labels = np.concatenate([np.ones(len(generated)), np.zeros(len(real))])
  mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
  return fit_detector((x - mean) / std, labels), mean, std


# ----------------------------------------------------- in-distribution ----


def distances(mean: np.ndarray, precision: np.ndarray, x: np.ndarray
              ) -> np.ndarray:
  """Squared Mahalanobis distances of standardised features x [N, d]."""
  centred = np.asarray(x, np.float64) - mean
  return np.einsum('nd,de,ne->n', centred, precision, centred)


def ood_p_value(answerer: Answerer, feats: np.ndarray) -> np.ndarray:
  """Share of the held-out generators' images at least as far from the
  training generators as each image (conformal, (1 + k) / (n + 1))."""
  x = (feats - answerer.feature_mean) / answerer.feature_std
  d = distances(answerer.ood_mean, answerer.ood_precision, x)
  ref = answerer.ood_reference
  farther = len(ref) - np.searchsorted(ref, d, side='left')
  return (1.0 + farther) / (len(ref) + 1.0)


# ------------------------------------------------------------- fitting ----


def fit(*, schema, generated_train: np.ndarray, real_train: np.ndarray,
        held_out_images: np.ndarray, held_out_predictions: dict,
        held_out_truth, identifiable, image_size: int, pool: int = 16,
        augment_prob: float = 0.0, resize_prob: float = 0.0,
        ood_alpha: float = 0.05, threshold: float = 0.5,
        coverage: float = COVERAGE, seed: int = 0) -> Answerer:
  """Fits every part of the answer.

  Args:
    schema: the parser's schema.
    generated_train, real_train: uint8 [N, s, s, 3] images of the training
      generators and crops of the training photographs.
    held_out_images: uint8 images of the held-out generators (the
      in-distribution score's reference).
    held_out_predictions: the parser's per-image outputs on them, as the
      parsing task's evaluation gives them ('continuous', 'discrete',
      'coarse', 'fine' probabilities, in the table's units).
    held_out_truth: `metrics.Labels` of those images.
    identifiable: names of the hyperparameters parsed on held-out GMs.
  """
  detector, detector_mean, detector_std = fit_on_images(
      generated_train, real_train, augment_prob=augment_prob,
      resize_prob=resize_prob, seed=seed)
  clean_generated = features(generated_train, pool)
  mean = clean_generated.mean(axis=0)
  std = clean_generated.std(axis=0) + 1e-6

  # Imported here: fitting needs scikit-learn, applying does not.
  from sklearn import covariance  # pylint: disable=g-import-not-at-top
  clean = (clean_generated - mean) / std
  cov = covariance.LedoitWolf().fit(clean)
  held_x = (features(held_out_images, pool) - mean) / std
  reference = np.sort(distances(cov.location_, cov.precision_, held_x))

  temperatures, half_widths = {}, {}
  p = held_out_predictions
  for j, param in enumerate(schema.discrete):
    temperatures[param.name] = calibration.fit_temperature(
        np.asarray(p['discrete'][j]), held_out_truth.discrete[:, j])
  names = schema.coarse + schema.fine
  used = np.concatenate([np.asarray(p['coarse']), np.asarray(p['fine'])], 1)
  truth = np.concatenate([held_out_truth.coarse, held_out_truth.fine], 1)
  for j, name in enumerate(names):
    temperatures[name] = calibration.fit_temperature(used[:, j], truth[:, j])
  for j, name in enumerate(schema.continuous):
    half_widths[name] = calibration.conformal_half_width(
        np.asarray(p['continuous'])[:, j], held_out_truth.continuous[:, j],
        coverage)
  return Answerer(
      image_size=image_size, pool=pool, detector_mean=detector_mean,
      detector_std=detector_std, detector=detector, feature_mean=mean,
      feature_std=std, ood_mean=cov.location_, ood_precision=cov.precision_,
      ood_reference=reference, ood_alpha=ood_alpha, threshold=threshold,
      temperatures=temperatures, half_widths=half_widths, coverage=coverage,
      identifiable=tuple(identifiable))


# ------------------------------------------------------------- on disk ----

_ARRAYS = ('detector_mean', 'detector_std', 'feature_mean', 'feature_std',
           'ood_mean', 'ood_precision', 'ood_reference')


def save(answerer: Answerer, workdir: str) -> str:
  """Writes `<workdir>/answer.npz` whole (temporary file, then renamed)."""
  meta = {k: getattr(answerer, k) for k in (
      'image_size', 'pool', 'ood_alpha', 'threshold', 'temperatures',
      'half_widths', 'coverage')}
  meta['identifiable'] = list(answerer.identifiable)
  arrays = {k: getattr(answerer, k) for k in _ARRAYS}
  arrays.update({f'detector_{k}': v for k, v in answerer.detector.items()})
  path = os.path.join(workdir, FILENAME)
  buffer = io.BytesIO()
  np.savez(buffer, meta=np.array(files.dumps(meta)), **arrays)
  files.write_bytes(path, buffer.getvalue())
  return path


def path_of(checkpoint_dir: str) -> str:
  """answer.npz of the run whose checkpoints are in `checkpoint_dir`
  ('<workdir>/checkpoints') or of the workdir itself."""
  parent = os.path.dirname(os.path.normpath(checkpoint_dir))
  for folder in (checkpoint_dir, parent):
    path = os.path.join(folder, FILENAME)
    if os.path.isfile(path):
      return path
  return os.path.join(parent, FILENAME)


def load(path: str) -> Answerer:
  """An answer file, checked; AnswerError naming it when it cannot be
  used (missing parts, non-finite values)."""
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(str(data['meta']))
      arrays = {k: np.asarray(data[k]) for k in _ARRAYS}
      detector = {k: np.asarray(data[f'detector_{k}'])
                  for k in ('w', 'b')}
  except (OSError, KeyError, ValueError) as e:
    raise AnswerError(f'{path} cannot be read ({e}); launch the run\'s '
                      'training command again: a finished run re-evaluates '
                      'and refits it') from None
  bad = [k for k, v in {**arrays, **detector}.items()
         if not np.all(np.isfinite(v))]
  if bad:
    raise AnswerError(f'{path} holds NaN or infinite values in '
                      f'{", ".join(bad)}')
  return Answerer(
      image_size=int(meta['image_size']), pool=int(meta['pool']),
      detector=detector, ood_alpha=float(meta['ood_alpha']),
      threshold=float(meta['threshold']),
      temperatures={k: float(v) for k, v in meta['temperatures'].items()},
      half_widths={k: (float('nan') if v is None else float(v))
                   for k, v in meta['half_widths'].items()},
      coverage=float(meta['coverage']),
      identifiable=tuple(meta['identifiable']), **arrays)


# ------------------------------------------------------------ answering ---


def calibrated(answerer: Answerer, schema, outputs: dict) -> dict:
  """The parser's probabilities [N, ...] with the fitted temperatures."""
  t = answerer.temperatures
  names = schema.coarse + schema.fine
  used = np.concatenate([np.asarray(outputs['coarse']),
                         np.asarray(outputs['fine'])], axis=1)
  scaled = np.stack([calibration.scale_binary(used[:, j], t.get(n, 1.0))
                     for j, n in enumerate(names)], axis=1)
  k = len(schema.coarse)
  return {'continuous': np.asarray(outputs['continuous']),
          'discrete': [calibration.scale_classes(np.asarray(probs),
                                                 t.get(p.name, 1.0))
                       for p, probs in zip(schema.discrete,
                                           outputs['discrete'])],
          'coarse': scaled[:, :k], 'fine': scaled[:, k:]}


def class_choice(param, probabilities: np.ndarray) -> dict:
  """One image's discrete parameter: its top class, that class's
  probability, and every class's (a summary over images averages them)."""
  k = int(np.argmax(probabilities))
  return {'class': param.classes[k], 'probability': float(probabilities[k]),
          'probabilities': {c: float(v)
                            for c, v in zip(param.classes, probabilities)}}


def parse_of(answerer: Answerer, schema, ground_truth, probs: dict,
             i: int) -> dict:
  """Image i's calibrated parse: identifiable hyperparameters only, each
  continuous one with its interval; the rest listed as not identifiable."""
  known = set(answerer.identifiable)
  continuous = {}
  for j, name in enumerate(schema.continuous):
    q = answerer.half_widths.get(name, float('nan'))
    if name not in known or not np.isfinite(q):
      continue
    x = float(probs['continuous'][i, j])
    entry = {'normalized': x, 'interval_normalized': [max(0.0, x - q),
                                                      min(1.0, x + q)],
             'coverage': answerer.coverage}
    if ground_truth is not None:
      lo_hi = np.zeros((3, len(schema.continuous)))
      lo_hi[:, j] = [x, *entry['interval_normalized']]
      raw = ground_truth.denormalize(lo_hi)[:, j]
      if np.all(np.isfinite(raw)):
        entry['value'], entry['interval'] = float(raw[0]), [
            float(raw[1]), float(raw[2])]
    continuous[name] = entry
  discrete = {param.name: class_choice(param, p[i])
              for param, p in zip(schema.discrete, probs['discrete'])
              if param.name in known}
  used = np.concatenate([probs['coarse'][i], probs['fine'][i]])
  loss = {n: float(v) for n, v in zip(schema.coarse + schema.fine, used)
          if n in known}
  shown = set(continuous) | set(discrete) | set(loss)
  return {'continuous': continuous, 'discrete': discrete,
          'loss_type_probability': loss,
          'not_identifiable': [n for n in schema.columns if n not in shown]}


def decide(answerer: Answerer, p_gen: float, p_in: float) -> str | None:
  """Why an image gets no parse, or None when it gets one."""
  if p_gen < answerer.threshold:
    return (f'looks real: P(generated) {p_gen:.2f} is below '
            f'{answerer.threshold:g}')
  if p_in < answerer.ood_alpha:
    return ('outside what the parser has seen: in-distribution p-value '
            f'{p_in:.3f} is below {answerer.ood_alpha:g}')
  return None
