r"""Throughput of jaxfp against the published PyTorch recipe, on one device.

  python -m jaxfp.benchmark                       # every row, published sizes
  python -m jaxfp.benchmark --rows=parsing_train,parsing_infer --repeats=10
  python -m jaxfp.benchmark --dtype=bfloat16 --output=/tmp/bench.json
  python -m jaxfp.benchmark --smoke               # tiny models, one step a row
  python -m jaxfp.benchmark --rows=parsing_train --profile_dir=/tmp/prof

The rows and what they measure: `jaxfp.bench.run`. The recipes are
configs/fen.py and configs/detection.py (their `:test` presets under
--smoke). Exit status: 0, or 2 for a user error (a bad flag).
"""

import dataclasses
import json
import os

from absl import app
from absl import flags

from configs import detection as detection_config
from configs import fen as fen_config
from jaxfp.bench import options
from jaxfp.bench import run
from jaxfp.bench import workloads
from jaxfp.core import console

FLAGS = flags.FLAGS


def define_flags():
  d = options.Options(parsing_config=None, detection_config=None)
  flags.DEFINE_list('rows', list(options.ROWS), 'Rows to measure.')
  flags.DEFINE_integer('parsing_batch', d.parsing_batch,
                       'Batch of the parsing rows and the input pipeline '
                       '(published 16).')
  flags.DEFINE_integer('detection_batch', d.detection_batch,
                       'Batch of the detection rows (published 32).')
  flags.DEFINE_integer('warmup', d.warmup, 'Untimed steps after compiling.')
  flags.DEFINE_integer('repeats', d.repeats,
                       'Timed repeats; the median is reported.')
  flags.DEFINE_float('min_repeat_s', d.min_repeat_s,
                     'Each repeat runs enough steps to last this long.')
  flags.DEFINE_enum('dtype', d.dtype, ['float32', 'bfloat16'],
                    "jaxfp's compute dtype (PyTorch stays float32).")
  flags.DEFINE_enum('torch', d.torch, ['auto', 'on', 'off'],
                    'The PyTorch column: auto = when torch is installed.')
  flags.DEFINE_integer('torch_threads', d.torch_threads,
                       'torch.set_num_threads; 0 = torch default.')
  flags.DEFINE_float('peak_flops', d.peak_flops,
                     'Peak FLOP/s of one device; default: '
                     'jaxfp.bench.flops.default_peak.')
  flags.DEFINE_integer('data_gms', d.data_gms,
                       'GM folders of the synthetic image tree (one is the '
                       'held-out GM).')
  flags.DEFINE_integer('data_images_per_gm', d.data_images_per_gm,
                       'PNGs per GM folder.')
  flags.DEFINE_integer('data_workers', d.data_workers,
                       'PyTorch DataLoader workers.')
  flags.DEFINE_bool('smoke', d.smoke,
                    'Tiny models and batches, one timed step per row.')
  flags.DEFINE_string('profile_dir', d.profile_dir,
                      'If set, trace the train rows there and print where a '
                      'step goes.')
  flags.DEFINE_integer('profile_steps', d.profile_steps, 'Steps to trace.')
  flags.DEFINE_string('output', d.output, 'JSON file of the results.')
  flags.DEFINE_bool('check_recompilation', False,
                    'Instead of timing, run the trainer on '
                    'configs/fen.py:test and list what it compiles.')


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  f = FLAGS
  # PyTorch shares the GPU within this process: without this, jax takes 75%
  # of its memory up front. Read when jax starts its backend, i.e. later.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  if f.check_recompilation:
    print(json.dumps(workloads.trainer_compilations(
        fen_config.get_config('test')), indent=2))
    return
  preset = 'test' if f.smoke else ''
  # Every Options field but the two recipes is the flag of its name.
  values = {field.name: f[field.name].value
            for field in dataclasses.fields(options.Options)
            if not field.name.endswith('_config')}
  run.run(options.Options(
      parsing_config=fen_config.get_config(preset),
      detection_config=detection_config.get_config(preset),
      **{**values, 'rows': tuple(f.rows)}))


if __name__ == '__main__':
  define_flags()
  console.run(main)
