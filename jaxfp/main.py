"""Trains and evaluates a run.

  python -m jaxfp.main --config=configs/fen.py --workdir=runs/fen
  python -m jaxfp.main --config=configs/fen.py:cpu --workdir=runs/fen_cpu \
      --config.num_train_steps=2000

Every config field can be overridden with --config.<field>=<value>. Running
again with the same workdir resumes from its latest checkpoint.

Several processes (hosts of a TPU pod, GPUs of a SLURM job, or
launch/local.sh) run this same command; `jaxfp.core.distributed` joins them
before training. Only process 0 logs below WARNING, writes summaries and
results. Exit status: 0 (also after a SIGTERM that saved a checkpoint), 130
after a Ctrl-C (SIGINT) that saved one, or
2 for a user error (a bad flag or config field, a workdir that is a file,
cannot be written or is locked by another run, a checkpoint that does not
fit the config, a loss that went NaN or infinite).
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from jaxfp import train
from jaxfp.core import console
from jaxfp.core import distributed
from jaxfp.core import preemption

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries '
                    'and results.')
config_flags.DEFINE_config_file('config', None, 'Training configuration.',
                                lock_config=True)
flags.DEFINE_enum('distributed', None, distributed.MODES,
                  'Multi-process start-up: auto (explicit values, else a '
                  'detected TPU pod / SLURM / Open MPI cluster, else one '
                  f'process), on, off. Default: ${distributed.ENV_MODE} or '
                  'auto.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0. '
                    f'Default: ${distributed.ENV_COORDINATOR}.')
flags.DEFINE_integer('num_processes', None, 'Number of processes. Default: '
                     f'${distributed.ENV_NUM_PROCESSES}.')
flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1. '
                     f'Default: ${distributed.ENV_PROCESS_ID}.')
flags.mark_flags_as_required(['config', 'workdir'])


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                         FLAGS.process_id, FLAGS.distributed)
  if jax.process_index() > 0:
    console.warnings_only()
  result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  return preemption.exit_status(result.get('signal'))


if __name__ == '__main__':
  console.run(main)
