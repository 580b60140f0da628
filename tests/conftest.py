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
