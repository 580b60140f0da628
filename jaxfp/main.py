"""Trains and evaluates a model-parsing run.

  python -m jaxfp.main --config=configs/fen.py --workdir=runs/fen
  python -m jaxfp.main --config=configs/fen.py:cpu --workdir=runs/fen_cpu \
      --config.num_train_steps=2000

Every config field can be overridden with --config.<field>=<value>. Running
again with the same workdir resumes from its latest checkpoint.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jaxfp import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries '
                    'and results.')
config_flags.DEFINE_config_file('config', None, 'Training configuration.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
