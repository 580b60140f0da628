r"""Evaluates a checkpoint on held-out data, without training.

  python -m jaxfp.evaluate --workdir=runs/fen_cpu
  python -m jaxfp.evaluate --checkpoint=runs/fen_cpu/checkpoints/1000 \
      --workdir=/tmp/fen_cpu_step1000
  python -m jaxfp.evaluate --checkpoint=runs/published_parsing \
      --config=configs/fen.py --config.data.name=model_parsing ...
  python -m jaxfp.evaluate --checkpoint=runs/fen_cpu --workdir=/tmp/seed123 \
      --all_held_out --config=configs/fen.py:cpu --config.data.zoo.seed=123

See `jaxfp.tools.evaluate`: which config, which held-out GMs, what is
written. Exit status: 0, or 2 for a user error (a bad flag, config field or
checkpoint).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxfp.core import console
from jaxfp.tools import evaluate

FLAGS = flags.FLAGS


def define_flags() -> None:
  # From __main__ only: tests import commands whose flags share names.
  flags.DEFINE_string('workdir', None, 'Where the report goes; also the run '
                      'to evaluate when --checkpoint is not given.')
  flags.DEFINE_string('checkpoint', None, 'A run directory, its checkpoints '
                      'folder or one step folder; default --workdir.')
  flags.DEFINE_integer('step', None, 'Step to evaluate; default the latest.')
  flags.DEFINE_enum('split', 'checkpoint', ('checkpoint', 'config'),
                    "Held-out GMs: the checkpoint's own (meta 'test_gms'), or "
                    'as the config chooses them.')
  flags.DEFINE_bool('all_held_out', False, 'Hold out every GM of the '
                    'dataset (one the checkpoint never saw, e.g. '
                    '--config.data.zoo.seed=123); overrides --split.')
  config_flags.DEFINE_config_file(
      'config', None, 'Optional: data and evaluation settings (the network '
      "always comes from the checkpoint). Default: the checkpoint's config.",
      lock_config=False)


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  checkpoint = FLAGS.checkpoint or FLAGS.workdir
  if not checkpoint:
    raise app.UsageError('give --workdir (a training run) or --checkpoint')
  result = evaluate.evaluate_checkpoint(
      checkpoint, workdir=FLAGS.workdir, config=FLAGS.config, step=FLAGS.step,
      use_checkpoint_split=FLAGS.split == 'checkpoint',
      all_held_out=FLAGS.all_held_out)
  print('\n' + result['text'], flush=True)


if __name__ == '__main__':
  define_flags()
  console.run(main)
