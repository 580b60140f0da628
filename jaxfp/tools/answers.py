"""How honest a parsing run's per-image answer is, on generators and
photographs it never saw (`python -m jaxfp.answers`).

Inputs: a run with an answer file (`jaxfp.inference.answer`), a tree of
generators it never saw (a zoo of another seed, or any GM-folder tree with
a ground-truth table), and crops of the test photographs
(`zoo.photos.PHOTO_SETS['test']`), which nothing is fitted or tuned on.

Reports (answers.md, answers.json, reliability.png in --workdir):
  detection    ROC AUC and AP of P(generated), overall and per family
               (each family's images against every photograph crop), clean,
               after JPEG at quality 75 and after a 2x downscale (both
               classes alike); the false-positive rate on the photographs
               at the run's threshold. Beside it the non-deep reference
               (the same logistic regression on the same features, fitted
               here on the run's training generators and photographs
               without augmentation).
  answer       the share of photographs that get no parse, and of each
               family's images that do.
  calibration  expected calibration error (15 bins, top label) of the
               identifiable discrete and loss-type probabilities, before
               and after the run's temperatures, with a reliability
               diagram; the coverage of the continuous intervals.
  study        (--study) detectors fitted on the run's training data with
               and without augmentation, and on one family only.
"""

from __future__ import annotations

import os

from absl import logging
import jax
import ml_collections
import numpy as np
from sklearn import metrics as sk_metrics

from jaxfp.core import console
from jaxfp.core import files
from jaxfp.core import schema as schema_lib
from jaxfp.data import perturbations
from jaxfp.data import trees
from jaxfp.inference import answer as answer_lib
from jaxfp.inference import calibration
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.report import plots
from jaxfp.report import tables
from jaxfp.tasks import answering
from jaxfp.zoo import photos as photos_lib

# What sharing does to an image, as the acceptance measures it.
CONDITIONS = (('clean', None), ('JPEG q75', ('jpeg', 75)),
              ('2x downscale', ('resize', 0.5)))


def read_tree(root: str, size: int) -> tuple[np.ndarray, np.ndarray,
                                              schema_lib.GroundTruth]:
  """uint8 images [N, s, s, 3] of every GM of a tree, their rows in its
  ground truth, and the table; unreadable images are named and left out."""
  found = trees.scan(root)
  gt, _ = trees.read_ground_truth(found)
  images, rows = [], []
  from jaxfp.data import images as images_lib  # pylint: disable=g-import-not-at-top
  for row, gm in enumerate(gt.gm_names):
    for rel in found.files[gm]:
      path = os.path.join(found.images_root, rel)
      try:
        images.append(images_lib.load_image(path, size))
        rows.append(row)
      except images_lib.ImageError as e:
        logging.warning('skipped %s: %s', images_lib.shown(path), e)
  return np.stack(images), np.asarray(rows, np.int32), gt


def perturbed(images: np.ndarray, condition) -> np.ndarray:
  if condition is None:
    return images
  name, severity = condition
  rng = np.random.default_rng(0)  # Neither JPEG nor resizing draws from it.
  return np.stack([perturbations.apply(name, im, severity, rng)
                   for im in images])


def detection_scores(is_generated: np.ndarray, scores: np.ndarray,
                     family: np.ndarray, threshold: float) -> dict:
  """AUC and AP overall and per family; the photographs' false-positive
  rate and each family's detection rate at `threshold`."""
  real = ~is_generated
  out = {'auc': float(sk_metrics.roc_auc_score(is_generated, scores)),
         'ap': float(sk_metrics.average_precision_score(is_generated,
                                                         scores)),
         'false_positive_rate': float(np.mean(scores[real] >= threshold)),
         'families': {}}
  for name in sorted(set(family[is_generated])):
    keep = real | (family == name)
    out['families'][name] = {
        'auc': float(sk_metrics.roc_auc_score(is_generated[keep],
                                              scores[keep])),
        'detected': float(np.mean(scores[family == name] >= threshold))}
  return out


def _families(gt: schema_lib.GroundTruth, rows: np.ndarray) -> np.ndarray:
  names = gt.schema.discrete_names
  if 'family' not in names:
    return np.array(['all'] * len(rows))
  j = names.index('family')
  classes = gt.schema.discrete[j].classes
  return np.array([classes[k] for k in gt.discrete[rows, j]])


def _outputs(loaded: network.Loaded, images: np.ndarray,
             batch: int = 256) -> dict:
  """The parser's outputs on uint8 images, concatenated."""
  run = network.predict_fn(loaded)
  parts = []
  for start in range(0, len(images), batch):
    unit = images[start:start + batch].astype(np.float32) / 255.0
    out = run((unit - loaded.mean) / loaded.std)
    parts.append({k: out[k] for k in ('continuous', 'discrete', 'coarse',
                                      'fine')})
  return jax.tree.map(lambda *batches: np.concatenate(batches), *parts)


def _rows(raw: dict, start: int, stop: int) -> dict:
  """Images start..stop-1 of the outputs `raw`."""
  return jax.tree.map(lambda a: a[start:stop], raw)


def calibration_report(answerer: answer_lib.Answerer, schema, raw: dict,
                       gt: schema_lib.GroundTruth, rows: np.ndarray,
                       train_truth: schema_lib.GroundTruth | None) -> dict:
  """ECE before and after the temperatures, the diagrams' bins, and the
  continuous intervals' coverage, on every image of the tree."""
  scaled = answer_lib.calibrated(answerer, schema, raw)
  known = set(answerer.identifiable)
  out = {}
  for kind in ('discrete', 'loss'):
    for label, probs in (('raw', raw), ('calibrated', scaled)):
      conf, correct = [], []
      if kind == 'discrete':
        for j, param in enumerate(schema.discrete):
          truth = gt.discrete[rows, j]
          keep = truth >= 0
          if param.name not in known or not keep.any():
            continue
          p = np.asarray(probs['discrete'][j])[keep]
          conf.append(p.max(axis=1))
          correct.append(p.argmax(axis=1) == truth[keep])
      else:
        names = list(schema.coarse) + list(schema.fine)
        used = np.concatenate([probs['coarse'], probs['fine']], axis=1)
        truth = np.concatenate([gt.coarse[rows], gt.fine[rows]], axis=1)
        for j, name in enumerate(names):
          keep = truth[:, j] >= 0
          if name not in known or not keep.any():
            continue
          p = used[keep, j]
          conf.append(np.maximum(p, 1 - p))
          correct.append((p >= 0.5) == (truth[keep, j] == 1))
      if not conf:
        out[f'{kind}_{label}'] = None
        continue
      ece, bins = calibration.expected_calibration_error(
          np.concatenate(conf), np.concatenate(correct))
      out[f'{kind}_{label}'] = {'ece': ece, 'bins': bins,
                                'num': int(sum(len(c) for c in conf))}
  coverage = {}
  if train_truth is not None:
    truth = gt.denormalize(gt.continuous[rows])
    # Half-widths in normalised units; NaN where a column has none.
    q = np.array([answerer.half_widths.get(n, np.nan)
                  for n in schema.continuous])
    x = np.asarray(raw['continuous'])
    lo = train_truth.denormalize(np.clip(x - q, 0, 1))
    hi = train_truth.denormalize(np.clip(x + q, 0, 1))
    for j, name in enumerate(schema.continuous):
      keep = np.isfinite(truth[:, j])
      if name in known and np.isfinite(q[j]) and keep.any():
        t = truth[keep, j]
        coverage[name] = float(np.mean((t >= lo[keep, j] - 1e-6) &
                                       (t <= hi[keep, j] + 1e-6)))
  out['coverage'] = coverage
  out['nominal_coverage'] = answerer.coverage
  return out


def _answers(loaded, answerer, raw: dict, images: np.ndarray) -> list[dict]:
  """`predict.answered` for uint8 images and their outputs `raw`."""
  records = []
  for start in range(0, len(images), 1024):
    unit = images[start:start + 1024].astype(np.float32) / 255.0
    records += predict.answered(loaded, answerer,
                                _rows(raw, start, start + 1024), unit)
  return records


def zoo_tree(loaded: network.Loaded, seed: int | None = None) -> str:
  """The tree of the run's zoo, or of the same zoo with another seed,
  built into the run's cache first if needed."""
  config = loaded.meta.get('config', {})
  if config.get('data', {}).get('name') != 'zoo':
    raise ValueError(f'{loaded.directory}: trained on '
                     f'{config.get("data", {}).get("name")!r}, not the zoo; '
                     'give --tree')
  zoo = ml_collections.ConfigDict(config['data']['zoo'])
  if seed is not None:
    zoo.seed = seed
  cache = config['data'].get('cache_dir') or trees.default_cache_dir()
  # Where the trainer keeps its zoos (data/builtin_classes.py likewise).
  return trees.zoo_tree(zoo, os.path.join(cache, 'zoo'))


def _training_data(loaded: network.Loaded, tree: str, size: int):
  """The run's training generators' images (of `tree`, the run's zoo) and
  as many training-photograph crops (the reference's and the study's
  training set)."""
  config = loaded.meta['config']
  images, rows, gt = read_tree(tree, size)
  train = set(loaded.meta.get('train_gms', ()))
  keep = np.array([gt.gm_names[r] in train for r in rows])
  generated = images[keep]
  real = answering.real_crops(size, len(generated), int(config['seed']))
  return generated, real, _families(gt, rows[keep])


def study(generated, real, train_family, test_x: dict, labels, family,
          threshold: float, seed: int = 0) -> list[dict]:
  """Detectors fitted on the training data in several ways, scored on the
  test sets of every condition (`test_x`: condition -> features)."""
  settings = [('no augmentation', 0.0, 0.0, None),
              ('blur + JPEG 0.1', 0.1, 0.0, None),
              ('blur + JPEG 0.5', 0.5, 0.0, None),
              ('blur + JPEG 0.5, resize 0.3', 0.5, 0.3, None)]
  settings += [(f'trained on {f} only', 0.0, 0.0, f)
               for f in sorted(set(train_family))]
  rows = []
  for name, prob, resize, only in settings:
    gen = generated if only is None else generated[train_family == only]
    fitted = answer_lib.fit_on_images(gen, real[:len(gen)],
                                      augment_prob=prob, resize_prob=resize,
                                      seed=seed)
    rows.append({'detector': name, **{
        condition: detection_scores(
            labels, answer_lib.probability(*fitted, feats), family,
            threshold)
        for condition, feats in test_x.items()}})
  return rows


def run(checkpoint: str, tree: str, workdir: str, *, num_photographs: int =
        1200, with_study: bool = False, seed: int = 0) -> dict:
  """Scores the run's answer on `tree` and the test photographs; writes
  the report to `workdir`. Returns the JSON-able result (and 'text')."""
  workdir = files.check_output_folder(workdir, '--workdir')
  loaded = network.load(checkpoint)
  if loaded.schema is None:
    raise network.CheckpointError(
        f'{loaded.directory}: a {loaded.task} checkpoint; the answer is '
        "a parsing run's (configs/fen.py)")
  answerer = predict.load_answer(loaded)
  if answerer is None:
    raise network.CheckpointError(
        f'{answer_lib.path_of(loaded.directory)} is '
        'missing: this run has no per-image answer; train it again with '
        'config.answer.enabled')
  size = loaded.image_size
  with console.quietly('Reading the generators and the test photographs'):
    gen_images, rows, gt = read_tree(tree, size)
    photos = answering.real_crops(size, num_photographs, seed, which='test')
  if gt.schema != loaded.schema:
    raise ValueError(f'{tree}: its ground truth has another schema than '
                     'the checkpoint')
  family = np.concatenate([_families(gt, rows),
                           np.array(['photograph'] * len(photos))])
  labels = np.concatenate([np.ones(len(gen_images), bool),
                           np.zeros(len(photos), bool)])
  everything = np.concatenate([gen_images, photos])
  result = {'checkpoint': loaded.directory, 'step': loaded.step,
            'tree': tree, 'num_generators': len(np.unique(rows)),
            'num_generated_images': len(gen_images),
            'num_photograph_crops': len(photos),
            'photographs': list(photos_lib.PHOTO_SETS['test']),
            'threshold': answerer.threshold, 'ood_alpha': answerer.ood_alpha}

  # The reference trains on the run's own images. Its zoo is found (or
  # built, minutes, with a display of its own) before the quiet part below.
  train_tree = zoo_tree(loaded)
  with console.quietly('Scoring the detector and the reference'):
    test_x = {name: answer_lib.detector_features(perturbed(everything, c))
              for name, c in CONDITIONS}
    result['detection'] = {
        name: detection_scores(labels, answer_lib.p_generated(
            answerer, test_x[name]), family, answerer.threshold)
        for name in test_x}
    train_gen, train_real, train_family = _training_data(loaded, train_tree,
                                                         size)
    reference = answer_lib.fit_on_images(train_gen, train_real, seed=seed)
    result['reference'] = {
        name: detection_scores(labels, answer_lib.probability(
            *reference, test_x[name]), family, 0.5)
        for name in test_x}

  with console.quietly('The per-image answers'):
    raw = _outputs(loaded, everything)
    records = _answers(loaded, answerer, raw, everything)
  parsed = np.array([r['parse'] is not None for r in records])
  inside = np.array([r['in_distribution'] for r in records])
  result['answer'] = {
      'photographs_abstained': float(np.mean(~parsed[~labels])),
      'parsed_by_family': {f: float(np.mean(parsed[family == f]))
                           for f in sorted(set(family[labels]))},
      'outside_by_family': {f: float(np.mean(~inside[family == f]))
                            for f in sorted(set(family))}}
  train_truth = loaded.ground_truth
  if train_truth is not None and loaded.meta.get('train_gms'):
    train_truth = train_truth.select(loaded.meta['train_gms'])
  result['calibration'] = calibration_report(
      answerer, loaded.schema, _rows(raw, 0, len(gen_images)), gt, rows,
      train_truth)
  if with_study:
    with console.quietly('The detection study'):
      result['study'] = study(train_gen, train_real, train_family, test_x,
                              labels, family, answerer.threshold, seed)
  _reliability(result['calibration'], os.path.join(workdir,
                                                   'reliability.png'))
  result['text'] = markdown(result)
  files.write_text(os.path.join(workdir, 'answers.md'),
                   result['text'] + '\n')
  files.write_json(os.path.join(workdir, 'answers.json'),
                   {k: v for k, v in result.items() if k != 'text'},
                   indent=2)
  return result


def _reliability(report: dict, path: str) -> None:
  panels = [(f'{kind}, {label}', report[f'{kind}_{label}'])
            for kind in ('discrete', 'loss')
            for label in ('raw', 'calibrated')
            if report.get(f'{kind}_{label}')]
  plots.reliability(path, [(t, r['bins'], r['ece']) for t, r in panels])


def _detection_rows(scored: dict, families: list[str]) -> list[list[str]]:
  return [[condition, f'{s["auc"]:.4f}', f'{s["ap"]:.4f}'] +
          [f'{s["families"][f]["auc"]:.4f}' for f in families] +
          [f'{s["false_positive_rate"]:.1%}']
          for condition, s in scored.items()]


def markdown(result: dict) -> str:
  families = sorted(next(iter(result['detection'].values()))['families'])
  head = ['condition', 'ROC AUC', 'AP'] + [f'AUC {f}' for f in families] + [
      f'photographs called generated (P >= {result["threshold"]:g})']
  parts = [
      f'Per-image answer of {result["checkpoint"]} (step {result["step"]}) '
      f'on {result["num_generators"]} generators it never saw '
      f'({result["num_generated_images"]} images, {result["tree"]}) and '
      f'{result["num_photograph_crops"]} crops of photographs nothing was '
      f'fitted on ({", ".join(result["photographs"])}).',
      '**Detection** (the run\'s detector)\n\n' + tables.markdown(
          head, _detection_rows(result['detection'], families)),
      '**The non-deep reference** (the same logistic regression on the same '
      'features, without augmentation; same training data)\n\n' +
      tables.markdown(head, _detection_rows(result['reference'], families))]
  a = result['answer']
  parts.append(
      '**Answers**: photographs with no parse '
      f'{a["photographs_abstained"]:.1%}; images parsed by family: ' +
      ', '.join(f'{f} {v:.1%}' for f, v in a['parsed_by_family'].items()) +
      '; outside what the parser has seen: ' +
      ', '.join(f'{f} {v:.1%}' for f, v in a['outside_by_family'].items()))
  c = result['calibration']
  cal = []
  for kind in ('discrete', 'loss'):
    raw, scaled = c.get(f'{kind}_raw'), c.get(f'{kind}_calibrated')
    if raw and scaled:
      cal.append([kind, f'{raw["ece"]:.4f}', f'{scaled["ece"]:.4f}',
                  raw['num']])
  parts.append('**Calibration** (ECE, 15 bins, top label; identifiable '
               'hyperparameters)\n\n' + tables.markdown(
                   ['probabilities', 'ECE raw', 'ECE calibrated',
                    'predictions'], cal))
  if c['coverage']:
    mean = np.mean(list(c['coverage'].values()))
    parts.append(
        f'**Continuous intervals** (nominal {c["nominal_coverage"]:.0%}): '
        f'mean coverage {mean:.1%}; ' + ', '.join(
            f'{n} {v:.1%}' for n, v in c['coverage'].items()))
  else:
    parts.append('**Continuous intervals**: none identifiable.')
  if result.get('study'):
    rows = [[r['detector']] +
            [f'{r[cond]["auc"]:.4f}' for cond, _ in CONDITIONS] +
            [' / '.join(f'{r["clean"]["families"][f]["auc"]:.3f}'
                        for f in families),
             f'{r["clean"]["false_positive_rate"]:.1%}']
            for r in result['study']]
    parts.append('**Detection study** (fitted on the run\'s training '
                 'data)\n\n' + tables.markdown(
                     ['detector'] + [f'AUC {c}' for c, _ in CONDITIONS] +
                     [f'clean AUC {" / ".join(families)}',
                      'photographs called generated'], rows))
  return '\n\n'.join(parts)
