r"""Runs the named variations of a config one after another, and tables them.

  python -m jaxfp.sweep --config=configs/sweeps/constraints.py \
      --workdir=runs/constraints --config.num_train_steps=400
  python -m jaxfp.sweep --config=configs/sweeps/folds.py --workdir=runs/cv

See `jaxfp.tools.sweep` for sweep files, resuming and the tables. Exit
status: 0, or 2 for a user error (a bad flag, sweep file or override).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxfp.core import console
from jaxfp.core import preemption
from jaxfp.tools import sweep

FLAGS = flags.FLAGS


def define_flags() -> None:
  # From __main__ only: tests import commands whose flags share names.
  flags.DEFINE_string('workdir', None, 'Sweep directory: one folder per run, '
                      'and sweep.md / sweep.csv.')
  flags.DEFINE_list('runs', [], 'Only these runs (default: every run).')
  flags.DEFINE_bool('list', False, 'Print the runs and their overrides, run '
                    'nothing.')
  config_flags.DEFINE_config_file(
      'config', None, 'Sweep file (get_config and get_sweep).',
      lock_config=True)
  flags.mark_flags_as_required(['config', 'workdir'])


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  path = config_flags.get_config_filename(FLAGS['config'])
  if FLAGS.list:
    print(sweep.listing(FLAGS.config, path))
    return
  outcome = sweep.run_file(FLAGS.config, path, FLAGS.workdir,
                           only=FLAGS.runs)
  print('\n' + outcome.table, flush=True)
  return preemption.exit_status(outcome.signal)


if __name__ == '__main__':
  define_flags()
  console.run(main)
