"""Test session set-up: four simulated CPU devices, so pmap paths run for real.

The flag must be set before jax is first imported, hence here.
"""
import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


import tempfile  # pylint: disable=g-import-not-at-top,g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top,g-bad-import-order

# Tests compile the same small programs many times (each trainer run, each
# device count); a persistent cache for the session turns repeats into loads.
jax.config.update('jax_compilation_cache_dir',
                  tempfile.mkdtemp(prefix='jaxfp-test-jax-cache-'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top,g-bad-import-order


@pytest.fixture(autouse=True)
def _info_verbosity():
  """Every test starts at absl's INFO: a command run in an earlier test
  (flags parsed, then unparsed) leaves absl at another verbosity, and tests
  that read progress lines from the log would see none."""
  absl_logging.set_verbosity(absl_logging.INFO)
  yield


@pytest.fixture(scope='session')
def zoo_cache(tmp_path_factory):
  """The cache of the test zoo (configs/fen.py:test), shared by every test
  in the session and by the subprocesses they start: built once."""
  return tmp_path_factory.getbasetemp() / 'jaxfp-shared-test-cache'


@pytest.fixture(scope='session')
def parsing_run(tmp_path_factory, zoo_cache):
  """A 2-step run of configs/fen.py:test, checkpointed at steps 1 and 2, for
  the tests that only read a finished parsing run (tests/test_evaluate.py,
  tests/test_answer.py); a test that changes a run copies it first.

  Returns (config, workdir, the trainer's result, results.json, what the
  trainer printed).
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported
  from configs import fen as fen_config  # pylint: disable=g-import-not-at-top
  from jaxfp import train  # pylint: disable=g-import-not-at-top
  config = fen_config.get_config('test')
  config.data.cache_dir = str(zoo_cache)
  config.num_train_steps = 2
  config.checkpoint_every_steps = 1
  config.eval_every_steps = 100
  # Several closed-set images among the 4 x 6 of the training GMs.
  config.data.closed_set_fraction = 0.3
  workdir = str(tmp_path_factory.mktemp('parsing_run'))
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    result = train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  return config, workdir, result, results, printed.getvalue()
