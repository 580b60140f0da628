"""Runs a checkpoint on image files and folders and reports what it sees
(`python -m jaxfp.predict`; inputs, size policy, the answer, --summary and
skipped files: docs/inference.md).

Per image, by the checkpoint's task: a parser's answer (`answered`:
P(generated), the in-distribution p-value, and the calibrated parse only
when the image is judged generated and inside what the parser has seen,
else 'abstain_reason'; a run without an answer file gives the raw parse,
marked uncalibrated); detection's P(fake); attribution's predicted source
and every source's probability. A table goes to the terminal, JSON lines
to --output, and with --panels_dir one PNG per image: the image, its
fingerprint and its spectrum. Exit status: 0 all inputs processed, 1 some
failed, 2 nothing to do or a bad checkpoint.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image

from jaxfp.core import console
from jaxfp.core import files
from jaxfp.core import schema as schema_lib
from jaxfp.data import images as images_lib
from jaxfp.inference import answer as answer_lib
from jaxfp.inference import gallery as gallery_lib
from jaxfp.inference import network
from jaxfp.report import metrics
from jaxfp.report import summaries
from jaxfp.report import tables


def describe(loaded: network.Loaded, out: dict, i: int) -> dict:
  """The JSON-able prediction for image i of a batch's outputs."""
  if network.has_embedding(loaded):
    return {}  # A source embedding says something only against a gallery.
  if loaded.schema is not None:
    s = loaded.schema
    continuous = {name: {'normalized': float(out['continuous'][i, j])}
                  for j, name in enumerate(s.continuous)}
    if loaded.ground_truth is not None:
      raw = loaded.ground_truth.denormalize(out['continuous'][i])
      for j, name in enumerate(s.continuous):
        if np.isfinite(raw[j]):
          continuous[name]['value'] = float(raw[j])
    discrete = {p.name: answer_lib.class_choice(p, probs[i])
                for p, probs in zip(s.discrete, out['discrete'])}
    used = np.concatenate([out['coarse'][i], out['fine'][i]])
    loss_types = {n: float(v) for n, v in zip(s.coarse + s.fine, used)}
    return {'continuous': continuous, 'discrete': discrete,
            'loss_type_probability': loss_types}
  probs = out['probabilities'][i]
  by_class = {n: float(p) for n, p in zip(loaded.class_names, probs)}
  if loaded.task == 'detection':
    fake = schema_lib.fake_index(loaded.class_names)
    return {'fake_probability': float(probs[fake]), 'probabilities': by_class,
            'verdict': loaded.class_names[int(np.argmax(probs))]}
  k = int(np.argmax(probs))
  return {'source': loaded.class_names[k], 'probability': float(probs[k]),
          'probabilities': by_class}


def load_answer(loaded: network.Loaded) -> answer_lib.Answerer | None:
  """The run's answer file, or None where it has none (classifiers, source
  embeddings, converted weights, runs trained before it existed)."""
  if loaded.schema is None:
    return None
  path = answer_lib.path_of(loaded.directory)
  return answer_lib.load(path) if os.path.isfile(path) else None


def answered(loaded: network.Loaded, answerer: answer_lib.Answerer | None,
             out: dict, unit: np.ndarray) -> list[dict]:
  """The per-image answer of a parser's batch: outputs `out` of images
  `unit` (float [n, s, s, 3] in [0, 1])."""
  n = len(unit)
  if answerer is None:
    return [{'p_generated': None, 'in_distribution': None,
             'ood_p_value': None, 'calibrated': False,
             'parse': describe(loaded, out, i), 'abstain_reason': None}
            for i in range(n)]
  pixels = np.clip(np.rint(np.asarray(unit) * 255.0), 0, 255)
  p_gen = answer_lib.p_generated(
      answerer, answer_lib.detector_features(pixels.astype(np.uint8)))
  p_in = answer_lib.ood_p_value(answerer,
                                answer_lib.features(unit, answerer.pool))
  probs = answer_lib.calibrated(answerer, loaded.schema, out)
  records = []
  for i in range(n):
    reason = answer_lib.decide(answerer, float(p_gen[i]), float(p_in[i]))
    records.append({
        'p_generated': float(p_gen[i]),
        'in_distribution': bool(p_in[i] >= answerer.ood_alpha),
        'ood_p_value': float(p_in[i]), 'calibrated': True,
        'parse': None if reason else answer_lib.parse_of(
            answerer, loaded.schema, loaded.ground_truth, probs, i),
        'abstain_reason': reason})
  return records


def _format_parse(record: dict) -> str:
  """The parsing part of a record in words."""
  lines = []
  if record['p_generated'] is not None:
    inside = ('inside' if record['in_distribution'] else 'outside')
    lines.append(f'  P(generated) {record["p_generated"]:.3f}; {inside} what '
                 f'the parser has seen (p {record["ood_p_value"]:.3f})')
  p = record['parse']
  if p is None:
    lines.append(f'  no parse: {record["abstain_reason"]}')
    return '\n'.join(lines)
  if not record['calibrated']:
    lines.append('  uncalibrated parse (this run has no answer file): no '
                 'detection, no abstention')
  cont = []
  for name, v in p['continuous'].items():
    if 'interval' in v:
      lo, hi = v['interval']
      cont.append(f'{name} {v["value"]:.4g} [{lo:.3g}, {hi:.3g}]')
    elif 'value' in v:
      cont.append(f'{name} {v["value"]:.4g} ({v["normalized"]:.2f})')
    else:
      cont.append(f'{name} ? ({v["normalized"]:.2f})')
  if cont:
    cover = next((v['coverage'] for v in p['continuous'].values()
                  if 'coverage' in v), None)
    head = (f'  architecture ({cover:.0%} intervals): ' if cover else
            '  architecture: ')
    lines.append(head + ', '.join(cont))
  if p['discrete']:
    lines.append('  ' + ', '.join(
        f'{n}: {v["class"]} ({v["probability"]:.2f})'
        for n, v in p['discrete'].items()))
  if p['loss_type_probability']:
    lines.append('  loss types P(used): ' + ', '.join(
        f'{n} {v:.2f}' for n, v in p['loss_type_probability'].items()))
  if p.get('not_identifiable'):
    lines.append('  not identifiable from images: ' +
                 ', '.join(p['not_identifiable']))
  return '\n'.join(lines)


def format_record(task: str, record: dict) -> str:
  """A few readable lines for one image."""
  head = images_lib.one_line(record['file'])
  if 'source' in record:
    head += '\n  ' + gallery_lib.describe(record['source'])
  if 'parse' in record:
    return head + '\n' + _format_parse(record)
  p = record['prediction']
  if not p:
    return head
  if task == 'detection':
    return f'{head}\n  {p["verdict"]}  P(fake) = {p["fake_probability"]:.3f}'
  if task == 'attribution':
    ranked = sorted(p['probabilities'].items(), key=lambda kv: -kv[1])
    return (f'{head}\n  source: {p["source"]} ({p["probability"]:.3f}); ' +
            ', '.join(f'{n} {v:.3f}' for n, v in ranked))
  return head


def _non_finite(value) -> bool:
  """Whether a prediction (nested dicts of numbers) holds NaN or infinity."""
  if isinstance(value, dict):
    return any(_non_finite(v) for v in value.values())
  if isinstance(value, list):
    return any(_non_finite(v) for v in value)
  return isinstance(value, float) and not math.isfinite(value)


def predict(loaded: network.Loaded, paths: Sequence[str], *,
            policy: str = 'resize', batch_size: int = 32,
            panels_dir: str | None = None, progress: bool = True,
            gallery: gallery_lib.Gallery | None = None,
            answerer: answer_lib.Answerer | None = None
            ) -> tuple[list[dict], list[tuple[str, str]]]:
  """Predictions for every readable image, and (path, reason) failures.

  A parser's records are its answers (`answered`, with `answerer`: the
  run's `load_answer`, or None for the raw parse). With a `gallery`, each
  record also has 'source': the nearest known source and the probability
  that the image comes from none of them.

  An image whose outputs are not finite (NaN, infinity) is a failure: a
  prediction without meaning, and JSON has no NaN.
  """
  if batch_size < 1:
    raise ValueError(f'batch size {batch_size}: must be at least 1')
  files, failures = images_lib.find_images(paths)
  run_batch = network.predict_fn(loaded)
  records = []
  if panels_dir:
    os.makedirs(panels_dir, exist_ok=True)
  with console.Progress(len(files), what='predict', unit='images',
                        enabled=progress) as bar:
    for batch_paths, images in images_lib.batches(
        files, loaded.image_size, policy, batch_size, failures,
        mean=loaded.mean, std=loaded.std):
      out = run_batch(images)
      parsed = None
      if loaded.schema is not None:
        unit = np.asarray(images[:len(batch_paths)]) * loaded.std + loaded.mean
        parsed = answered(loaded, answerer, out, unit)
      for i, path in enumerate(batch_paths):
        record = {'file': images_lib.shown(path), 'task': loaded.task}
        if parsed is None:
          record['prediction'] = describe(loaded, out, i)
        else:
          record.update(parsed[i])
        if gallery is not None:
          record['source'] = gallery_lib.attribute(
              gallery, out['embedding'][i])[0]
        if _non_finite(record):  # Its 'source' included.
          failures.append((path, 'the network gave NaN or infinite outputs'))
          continue
        if panels_dir:
          panel = summaries.fingerprint_panels(
              images[i:i + 1], out['fingerprint'][i:i + 1], loaded.mean,
              loaded.std)[0]
          stem = os.path.splitext(os.path.basename(path))[0]
          name = f'{len(records):05d}_{stem}.png'
          Image.fromarray(np.uint8(np.clip(panel, 0, 1) * 255)).save(
              os.path.join(panels_dir, name))
          record['panel'] = name
        records.append(record)
      bar.update(len(records) + len(failures))
    bar.update(len(files))
  return records, failures


def _votes(choices: Sequence[str], mean_probability: dict[str, float]
           ) -> dict:
  """The majority of `choices`, its share; ties go to the higher mean
  probability, then to the first name in `mean_probability`'s order."""
  names = list(mean_probability)
  counts = {n: choices.count(n) for n in names}
  best = max(names, key=lambda n: (counts[n], mean_probability[n],
                                   -names.index(n)))
  return {'majority': best, 'share': counts[best] / max(len(choices), 1),
          'votes': counts}


def _spread(values: Sequence[float]) -> dict:
  a = np.asarray(values, np.float64)
  return {'mean': float(a.mean()), 'std': float(a.std()),
          'min': float(a.min()), 'max': float(a.max())}


def _common(parses: Sequence[dict], part: str) -> list[str]:
  """Names of `part` that every parse (one at least) shows, in the first
  one's order."""
  return [n for n in parses[0][part] if all(n in p[part] for p in parses)]


def _summarize_parses(schema: schema_lib.Schema, records: Sequence[dict],
                      out: dict) -> dict:
  """A parser's summary: detection and abstention over every image, then
  each hyperparameter over the images that got a parse."""
  generated = [r['p_generated'] for r in records
               if r.get('p_generated') is not None]
  out['p_generated'] = _spread(generated) if generated else None
  reasons = [r['abstain_reason'] for r in records if r.get('abstain_reason')]
  out['num_parsed'] = len(records) - len(reasons)
  out['abstained'] = {
      'looks real': sum(r.startswith('looks real') for r in reasons),
      'outside what the parser has seen': sum(
          r.startswith('outside') for r in reasons)}
  out['continuous'], out['discrete'], out['loss_types'] = {}, {}, {}
  preds = [r['parse'] for r in records if r.get('parse') is not None]
  out['not_identifiable'] = list(preds[0].get('not_identifiable', [])
                                 ) if preds else []
  if not preds:
    return out
  for name in _common(preds, 'continuous'):
    entry = {'normalized': _spread(
        [p['continuous'][name]['normalized'] for p in preds])}
    values = [p['continuous'][name].get('value') for p in preds]
    if all(v is not None for v in values):
      entry['value'] = _spread(values)
    out['continuous'][name] = entry
  for param in schema.discrete:
    if param.name not in _common(preds, 'discrete'):
      continue
    mean = {c: float(np.mean([p['discrete'][param.name]['probabilities'][c]
                              for p in preds])) for c in param.classes}
    out['discrete'][param.name] = {
        **_votes([p['discrete'][param.name]['class'] for p in preds], mean),
        'mean_probability': mean}
  shown = set(_common(preds, 'loss_type_probability'))
  for name, level in metrics.loss_levels(schema):
    if name not in shown:
      continue
    used = np.array([p['loss_type_probability'][name] for p in preds])
    out['loss_types'][name] = {
        'level': level, 'mean_probability': float(used.mean()),
        'share_used': float(np.mean(used > metrics.LOSS_THRESHOLD))}
  return out


def summarize(loaded: network.Loaded, records: Sequence[dict],
              failures: Sequence[tuple[str, str]]) -> dict:
  """One summary of every image's prediction, for images of one source.

  Means over images of what `describe` gives per image; a discrete
  parameter (or class, for classifiers) also gets a vote: each image's
  top class. Returns a JSON-able dict (no NaN: with no image, the
  per-hyperparameter parts are empty).
  """
  out = {'task': loaded.task, 'checkpoint': loaded.directory,
         'step': loaded.step, 'num_images': len(records),
         'num_skipped': len(failures),
         'skipped': [{'file': images_lib.shown(f), 'reason': r}
                     for f, r in failures]}
  if loaded.schema is not None:
    return _summarize_parses(loaded.schema, records, out)
  preds = [r['prediction'] for r in records]
  out['classes'] = {}
  if preds:
    mean = {c: float(np.mean([p['probabilities'][c] for p in preds]))
            for c in loaded.class_names}
    top = [max(p['probabilities'], key=p['probabilities'].get)
           for p in preds]
    out['classes'] = {**_votes(top, mean), 'mean_probability': mean}
  return out


def format_summary(summary: dict, inputs: Sequence[str]) -> str:
  """The summary as markdown: a line on what it rests on, then tables."""
  head = (f'Summary of {summary["num_images"]} images'
          f' ({summary["num_skipped"]} skipped) under '
          f'{", ".join(images_lib.shown(p) for p in inputs)}; checkpoint '
          f'{summary["checkpoint"]} ({summary["task"]}, step '
          f'{summary["step"]}).')
  if not summary['num_images']:
    return head + ' No image to summarise.'
  parts = [head]
  if summary.get('p_generated') is not None:
    g = summary['p_generated']
    a = summary['abstained']
    parts.append(
        f'P(generated): mean {g["mean"]:.3f} (from {g["min"]:.3f} to '
        f'{g["max"]:.3f}). Parsed: {summary["num_parsed"]} of '
        f'{summary["num_images"]} images; no parse for '
        f'{a["looks real"]} that look real and '
        f'{a["outside what the parser has seen"]} outside what the parser '
        'has seen.')
  if 'continuous' in summary and not (
      summary['continuous'] or summary['discrete'] or summary['loss_types']):
    return '\n\n'.join(parts + ['No image got a parse.'])
  if summary.get('not_identifiable'):
    parts.append('Not identifiable from images (they did not beat the '
                 'training prior on held-out generators): ' +
                 ', '.join(summary['not_identifiable']) + '.')
  if 'classes' in summary:  # Detection, attribution.
    c = summary['classes']
    parts.append(
        f'Majority: {c["majority"]}, {c["share"]:.0%} of the votes.\n\n' +
        tables.markdown(['class', 'mean probability', 'votes'], [
            [n, f'{p:.3f}', c['votes'][n]]
            for n, p in c['mean_probability'].items()]))
    return '\n\n'.join(parts)
  cont = []
  for name, e in summary['continuous'].items():
    n = e['normalized']
    value = (f'{e["value"]["mean"]:.4g} ({e["value"]["min"]:.4g} to '
             f'{e["value"]["max"]:.4g})' if 'value' in e else '?')
    cont.append([name, f'{n["mean"]:.3f} ± {n["std"]:.3f}', value])
  parts.append('Continuous parameters: mean ± std over images in [0, 1], and '
               'the mean in original units (range over images)\n\n' +
               tables.markdown(['parameter', 'normalised', 'value'], cont))
  disc = []
  for name, e in summary['discrete'].items():
    ranked = sorted(e['mean_probability'].items(), key=lambda kv: -kv[1])
    disc.append([name, e['majority'], f'{e["share"]:.0%}',
                 ', '.join(f'{c} {p:.2f}' for c, p in ranked)])
  parts.append('Discrete parameters: the majority class over images, its '
               'share of the votes, and every class\'s mean probability\n\n'
               + tables.markdown(['parameter', 'majority', 'votes',
                                  'mean probabilities'], disc))
  loss = [[name, e['level'], f'{e["mean_probability"]:.3f}',
           f'{e["share_used"]:.0%}']
          for name, e in summary['loss_types'].items()]
  parts.append(f'Loss types: mean P(used), and the share of images with '
               f'P(used) > {metrics.LOSS_THRESHOLD}\n\n' + tables.markdown(
                   ['loss type', 'level', 'mean P(used)', 'images'], loss))
  return '\n\n'.join(parts)


def summary_paths(output: str) -> tuple[str, str]:
  """<output>.summary.json and .md, beside --output (its extension off)."""
  stem = os.path.splitext(output)[0]
  return f'{stem}.summary.json', f'{stem}.summary.md'


def run(checkpoint: str, paths: Sequence[str], *, policy: str = 'resize',
        batch_size: int = 32, output: str | None = None,
        panels_dir: str | None = None, table: bool = True,
        summary: bool = False, gallery: str | None = None) -> int:
  """The predict command: predictions of every image under `paths`.

  Prints a table (unless `table` is False) and writes JSON lines to
  `output`, checked before any work, so a bad path fails at once, and
  written whole at the end (`files.write_text`): an error on the way
  leaves no file, or an earlier one as it was. With `summary`, prints one
  summary of all images (`summarize`) and writes it beside `output`
  (`summary_paths`). Each unusable input gets one `skipped PATH: reason`
  line on stderr. Returns the exit status: 0 every input processed, 1 some
  skipped, 2 nothing processed. A bad checkpoint raises CheckpointError.
  """
  if batch_size < 1:
    raise ValueError(f'--batch_size={batch_size}: must be at least 1')
  files.check_outputs_apart({'--output': output, '--panels_dir': panels_dir},
                            paths)
  if panels_dir:
    files.check_output_folder(panels_dir, '--panels_dir')
  summary_files = ()
  if summary and output:
    summary_files = tuple(files.check_output_file(f, '--summary')
                          for f in summary_paths(output))
  if output:
    output = files.check_output_file(output, '--output')
  loaded = network.load(checkpoint)
  known = gallery_lib.load_for(gallery, loaded) if gallery else None
  records, failures = predict(loaded, paths, policy=policy,
                              batch_size=batch_size, panels_dir=panels_dir,
                              gallery=known, answerer=load_answer(loaded))
  for path, reason in failures:
    print(f'skipped {images_lib.one_line(path)}: {reason}', file=sys.stderr)
  if output:
    files.write_text(output, ''.join(files.dumps(record) + '\n'
                                     for record in records))
  if table:
    for record in records:
      print(format_record(loaded.task, record))
  if summary:
    about = summarize(loaded, records, failures)
    text = format_summary(about, paths)
    if summary_files:
      files.write_json(summary_files[0], {'inputs': [
          images_lib.shown(p) for p in paths], **about}, indent=2)
      files.write_text(summary_files[1], text + '\n')
    print(('\n' if table and records else '') + text)
  print(f'{len(records)} images processed, {len(failures)} failed '
        f'(checkpoint: {loaded.task}, step {loaded.step})', file=sys.stderr)
  if not records:
    return 2
  return 1 if failures else 0
