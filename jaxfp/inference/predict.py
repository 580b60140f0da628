"""Runs a checkpoint on image files and folders and reports what it sees
(`python -m jaxfp.predict`).

Inputs: files and folders (searched recursively for .png .jpg .jpeg .webp
.bmp); grayscale, palette, RGBA (alpha dropped) and 16-bit images become
8-bit RGB. Size policy (--resize): 'resize' (default, as published) scales
the whole image to the model's input size, ignoring its aspect ratio;
'center_crop' first cuts the largest centred square, then scales it.

Per image, by the checkpoint's task:
  parsing      every architecture hyperparameter by name (continuous ones in
               [0, 1] and, when the ground-truth ranges are known, in their
               original units), the discrete ones' classes, and each loss
               type with the probability that it was used;
  detection    the probability that the image is fake;
  attribution  the predicted source and every source's probability.
A table goes to the terminal, JSON lines to --output, and with --panels_dir
one PNG per image: the image, its fingerprint and its spectrum.

Unreadable, truncated or empty files and folders without images get one line
each on stderr and are skipped; every other image is still processed. Exit
status: 0 all inputs processed, 1 some failed, 2 nothing to do or a bad
checkpoint.
"""

from __future__ import annotations

import contextlib
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
from jaxfp.inference import gallery as gallery_lib
from jaxfp.inference import network
from jaxfp.report import summaries

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
    discrete = {}
    for p, probs in zip(s.discrete, out['discrete']):
      k = int(np.argmax(probs[i]))
      discrete[p.name] = {'class': p.classes[k],
                          'probability': float(probs[i, k])}
    loss_types = {name: float(out['coarse'][i, j])
                  for j, name in enumerate(s.coarse)}
    loss_types.update({name: float(out['fine'][i, j])
                       for j, name in enumerate(s.fine)})
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


def format_record(task: str, record: dict) -> str:
  """A few readable lines for one image."""
  p = record['prediction']
  head = record['file']
  if 'source' in record:
    head += '\n  ' + gallery_lib.describe(record['source'])
  if not p:
    return head
  if task == 'detection':
    return f'{head}\n  {p["verdict"]}  P(fake) = {p["fake_probability"]:.3f}'
  if task == 'attribution':
    ranked = sorted(p['probabilities'].items(), key=lambda kv: -kv[1])
    return (f'{head}\n  source: {p["source"]} ({p["probability"]:.3f}); ' +
            ', '.join(f'{n} {v:.3f}' for n, v in ranked))
  lines = [head]
  cont = []
  for name, v in p['continuous'].items():
    value = f'{v["value"]:.4g}' if 'value' in v else '?'
    cont.append(f'{name} {value} ({v["normalized"]:.2f})')
  lines.append('  architecture: ' + ', '.join(cont))
  lines.append('  ' + ', '.join(
      f'{n}: {v["class"]} ({v["probability"]:.2f})'
      for n, v in p['discrete'].items()))
  lines.append('  loss types P(used): ' + ', '.join(
      f'{n} {v:.2f}' for n, v in p['loss_type_probability'].items()))
  return '\n'.join(lines)


def _panel_name(path: str, index: int) -> str:
  stem = os.path.splitext(os.path.basename(path))[0]
  return f'{index:05d}_{stem}.png'


def _non_finite(value) -> bool:
  """Whether a prediction (nested dicts of numbers) holds NaN or infinity."""
  if isinstance(value, dict):
    return any(_non_finite(v) for v in value.values())
  return isinstance(value, float) and not math.isfinite(value)


def predict(loaded: network.Loaded, paths: Sequence[str], *,
            policy: str = 'resize', batch_size: int = 32,
            panels_dir: str | None = None, progress: bool = True,
            gallery: gallery_lib.Gallery | None = None
            ) -> tuple[list[dict], list[tuple[str, str]]]:
  """Predictions for every readable image, and (path, reason) failures.

  With a `gallery`, each record also has 'source': the nearest known source
  and the probability that the image comes from none of them.

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
      for i, path in enumerate(batch_paths):
        record = {'file': images_lib.shown(path), 'task': loaded.task,
                  'prediction': describe(loaded, out, i)}
        if gallery is not None:
          record['source'] = gallery_lib.attribute(
              gallery, out['embedding'][i])[0]
        if _non_finite(record['prediction']) or _non_finite(
            record.get('source', {})):
          failures.append((path, 'the network gave NaN or infinite outputs'))
          continue
        if panels_dir:
          panel = summaries.fingerprint_panels(
              images[i:i + 1], out['fingerprint'][i:i + 1], loaded.mean,
              loaded.std)[0]
          name = _panel_name(path, len(records))
          Image.fromarray(np.uint8(np.clip(panel, 0, 1) * 255)).save(
              os.path.join(panels_dir, name))
          record['panel'] = name
        records.append(record)
      bar.update(len(records) + len(failures))
    bar.update(len(files))
  return records, failures


def run(checkpoint: str, paths: Sequence[str], *, policy: str = 'resize',
        batch_size: int = 32, output: str | None = None,
        panels_dir: str | None = None, table: bool = True,
        gallery: str | None = None) -> int:
  """The predict command: predictions of every image under `paths`.

  Prints a table (unless `table` is False) and writes JSON lines to
  `output`, opened before any work, so a bad path fails at once. Each
  unusable input gets one `skipped PATH: reason` line on stderr. Returns
  the exit status: 0 every input processed, 1 some skipped, 2 nothing
  processed. A bad checkpoint raises CheckpointError.
  """
  if batch_size < 1:
    raise ValueError(f'--batch_size={batch_size}: must be at least 1')
  if panels_dir:
    files.check_output_folder(panels_dir, '--panels_dir')
  with contextlib.ExitStack() as stack:
    out = None
    if output:
      out = stack.enter_context(open(
          files.check_output_file(output, '--output'), 'w', encoding='utf-8'))
    loaded = network.load(checkpoint)
    known = gallery_lib.load_for(gallery, loaded) if gallery else None
    records, failures = predict(loaded, paths, policy=policy,
                                batch_size=batch_size, panels_dir=panels_dir,
                                gallery=known)
    for path, reason in failures:
      print(f'skipped {images_lib.shown(path)}: {reason}', file=sys.stderr)
    if out is not None:
      for record in records:
        out.write(files.dumps(record) + '\n')
  if table:
    for record in records:
      print(format_record(loaded.task, record))
  print(f'{len(records)} images processed, {len(failures)} failed '
        f'(checkpoint: {loaded.task}, step {loaded.step})', file=sys.stderr)
  if not records:
    return 2
  return 1 if failures else 0
