"""The benchmark's input-pipeline row, on a synthetic image tree in the
published layout."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
from PIL import Image

from jaxfp.bench import options
from jaxfp.bench import timing
from jaxfp.core import console
from jaxfp.core import normalization
from jaxfp.core import schema as schema_lib

PARSING_SIZE = 64  # Of the row's images.


def write_image_tree(root: str, num_gms: int, per_gm: int, source_size: int,
                     seed: int = 0) -> None:
  """PNG images in the published layout, root/images/<gm>/*.png, plus a
  ground-truth table (schema.write_csv) so the model_parsing builder reads it.
  """
  rng = np.random.default_rng(seed)
  s = schema_lib.ZOO
  names = [f'gm_{g:03d}' for g in range(num_gms)]
  rows = []
  for g, name in enumerate(names):
    folder = os.path.join(root, 'images', name)
    os.makedirs(folder, exist_ok=True)
    for i in range(per_gm):
      # Smooth noise: compresses like a photo, unlike white noise.
      small = rng.integers(0, 256, (source_size // 4, source_size // 4, 3),
                           np.uint8)
      Image.fromarray(small).resize((source_size, source_size),
                                    Image.BILINEAR).save(
                                        os.path.join(folder, f'{i:05d}.png'))
    row = {c: float(g + j) for j, c in enumerate(s.continuous)}
    row.update({p.name: p.classes[g % p.num_classes] for p in s.discrete})
    row.update({c: g % 2 for c in s.coarse + s.fine})
    rows.append(row)
  schema_lib.write_csv(root, s, names, rows)


def input_pipeline_row(opts: options.Options,
                       torch_peer=None) -> dict[str, Any]:
  """Images/s of the parsing train iterator (records -> normalised batch).

  The records are built once from a synthetic tree in the published layout
  (not timed). jaxfp's train iterator caches decoded images after its first
  pass, so it is timed twice: the first pass (decode-bound) and the steady
  state. The PyTorch side (`torch_peer`, `jaxfp.pytorch.bench_column`,
  when given) decodes every PNG every time, as published.
  """
  # tf.data only for this row: the model rows run without TensorFlow.
  with console.native_output_hushed():
    from jaxfp.data import gm_folders  # pylint: disable=g-import-not-at-top
  batch = opts.parsing_batch

  def images_per_s(batches) -> float:
    """Steady-state images/s of drawing batches from an iterator."""
    median, _ = timing.measure(lambda: next(batches), lambda: None,
                               warmup=opts.warmup, repeats=opts.repeats,
                               min_repeat_s=opts.min_repeat_s)
    return batch / median

  with tempfile.TemporaryDirectory(prefix='jaxfp-bench-data-') as tmp:
    manual = os.path.join(tmp, 'manual')
    write_image_tree(manual, opts.data_gms, opts.data_images_per_gm,
                     source_size=2 * PARSING_SIZE)
    c = opts.parsing_config.data.copy_and_resolve_references()
    c.update(name='model_parsing', cache_dir=os.path.join(tmp, 'cache'),
             manual_dir=manual, image_size=PARSING_SIZE, test_gms=('gm_000',))
    start = time.perf_counter()
    info = gm_folders.load_info(c)
    build_s = time.perf_counter() - start
    per_pass = info.num_train_images // batch
    if per_pass < 1:
      raise ValueError(f'{info.num_train_images} training images give no '
                       f'batch of {batch}; raise --data_images_per_gm')
    it = gm_folders.train_iterator(c, info, global_batch_size=batch,
                                local_device_count=1, seed=0)
    start = time.perf_counter()
    for _ in range(per_pass):
      next(it)
    first_pass = per_pass * batch / (time.perf_counter() - start)
    row = {
        'name': 'input_pipeline', 'batch': batch, 'image_size': PARSING_SIZE,
        'description': (f'{info.num_train_images} PNGs of '
                        f'{2 * PARSING_SIZE}px in {opts.data_gms - 1} GM '
                        f'folders -> {PARSING_SIZE}x{PARSING_SIZE} batches'),
        'jaxfp_images_per_s': images_per_s(it),
        'jaxfp_first_pass_images_per_s': first_pass,
        'jaxfp_record_build_s': build_s,
    }
    if torch_peer is not None:
      loader = torch_peer.image_loader(
          os.path.join(manual, 'images'), PARSING_SIZE, batch,
          opts.data_workers, normalization.MEAN, normalization.STD)
      row['torch_images_per_s'] = images_per_s(loader)
      row['torch_workers'] = opts.data_workers
  return row
