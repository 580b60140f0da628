"""Issue 14, case 10: every command answers a user error with one line.

`error: ...` naming the file, field or value, exit status 2, no traceback
(README, "Exit statuses"). Each case runs the real command in a process of
its own; they run side by side, and each fails before any real work. The
imports they share are paid once: the processes are forked from one that
made them (tests/forked_commands.py).
"""

import subprocess
import sys
import threading

from jaxfp.core import console
import subprocs


def _cases(tmp_path):
  a_file = tmp_path / 'a_file'
  a_file.write_text('not a folder')
  (tmp_path / 'data').mkdir()
  missing = tmp_path / 'missing'
  train = ['jaxfp.main', '--config=configs/fen.py:test']
  return {
      'evaluate, a missing checkpoint': (
          ['jaxfp.evaluate', f'--checkpoint={missing}'],
          f'checkpoint path {missing} does not exist'),
      'evaluate, a file for a run folder': (
          ['jaxfp.evaluate', f'--workdir={a_file}'],
          f'checkpoint path {a_file} is a file'),
      'robustness, a missing run': (
          ['jaxfp.robustness', f'--workdir={missing}'],
          f'checkpoint path {missing} does not exist'),
      'main, a negative batch': (
          train + [f'--workdir={tmp_path / "w1"}', '--config.batch_size=-8'],
          'config.batch_size=-8 must be at least 1'),
      'main, a NaN learning rate': (
          train + [f'--workdir={tmp_path / "w2"}',
                   '--config.learning_rate=nan'],
          'config.learning_rate=nan must be a finite number'),
      # Issue 22, cases 5 and 12: bounds checked before records are built
      # (a huge size filled memory), naming the field itself.
      'main, a huge image size': (
          train + [f'--workdir={tmp_path / "w4"}',
                   '--config.data.image_size=100000'],
          'config.data.image_size=100000 must be a whole number from 8 to '
          '1024'),
      'main, a negative image size': (
          train + [f'--workdir={tmp_path / "w5"}',
                   '--config.data.image_size=-64'],
          'config.data.image_size=-64 must be a whole number'),
      'main, a huge zoo image size': (
          train + [f'--workdir={tmp_path / "w6"}',
                   '--config.data.zoo.image_size=100000'],
          'config.data.zoo.image_size=100000 must be'),
      # Issue 22, the class of case 6: any non-finite number in the config.
      'main, a NaN loss weight': (
          train + [f'--workdir={tmp_path / "w7"}',
                   '--config.loss.fingerprint_weights.magnitude=nan'],
          'config.loss.fingerprint_weights.magnitude=nan must be a finite '
          'number'),
      'main, an unknown config field': (
          train + [f'--workdir={tmp_path / "w3"}', '--config.no_such=1'],
          "the config has no field 'no_such'"),
      'main, a workdir that is a file': (
          train + [f'--workdir={a_file}'],
          f'workdir {a_file} is a file, not a folder'),
      'main, a workdir that cannot be written': (
          # /proc takes no new folders, even from root.
          train + ['--workdir=/proc/jaxfp_run'],
          'workdir /proc/jaxfp_run cannot be created'),
      # Issue 22: a run's pictures would land among the data's images.
      'main, a workdir inside the data': (
          train + [f'--workdir={tmp_path / "data" / "run"}',
                   '--config.data.name=model_parsing',
                   f'--config.data.manual_dir={tmp_path / "data"}'],
          f'workdir {tmp_path / "data" / "run"} lies inside the input '
          f'folder {tmp_path / "data"}'),
      'predict, --batch_size=0': (
          ['jaxfp.predict', f'--checkpoint={missing}', '--batch_size=0',
           str(a_file)], 'flag --batch_size=0'),
      'cluster, --num_groups=-1': (
          ['jaxfp.cluster', f'--checkpoint={missing}', '--num_groups=-1',
           f'--workdir={tmp_path / "c"}', str(a_file)], 'flag --num_groups'),
  }


def test_user_errors_are_one_line_and_status_two(tmp_path):
  cases = _cases(tmp_path)
  results = subprocs.run_forked(
      {name: (args[0], args[1:]) for name, (args, _) in cases.items()},
      tmp_path / 'commands', subprocs.child_env(), 300)
  failures = []
  for name, (code, output) in results.items():
    expected = cases[name][1]
    lines = output.strip().splitlines()
    if (code != 2 or 'Traceback' in output or not lines or
        not lines[-1].startswith('error: ') or expected not in lines[-1]):
      failures.append(f'{name}: exit {code}, expected '
                      f'"{expected}", got:\n{output[-1500:]}')
  assert not failures, '\n\n'.join(failures)


# What Orbax's background threads report when a command stops on an error
# under them (threading.excepthook and asyncio's logger), then the error.
NOISY_COMMAND = """
import logging, sys, threading
from jaxfp.core import console

def closed():
  raise RuntimeError('Event loop is closed')

@console.command
def main(argv):
  for _ in range(3):
    thread = threading.Thread(target=closed)
    thread.start()
    thread.join()
  try:
    closed()
  except RuntimeError:
    logging.getLogger('asyncio').exception('Task exception was never '
                                           'retrieved')
  if len(argv) > 1:  # Another thread's failure is no noise: it shows.
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
  raise FileNotFoundError('checkpoint path /x does not exist')

console.run(main)
"""


def test_orbax_event_loop_reports_do_not_bury_the_error():
  def run(*args):
    return subprocess.run([sys.executable, '-c', NOISY_COMMAND, *args],
                          env=subprocs.child_env(), cwd=subprocs.REPO,
                          capture_output=True, text=True, timeout=120,
                          check=False)
  quiet = run()
  assert quiet.returncode == 2
  assert quiet.stderr == 'error: checkpoint path /x does not exist\n'
  other = run('other')
  assert 'ZeroDivisionError' in other.stderr
  assert 'Event loop is closed' not in other.stderr
  verbose = run('--verbosity=1')
  assert verbose.stderr.count('Event loop is closed') == 4


# A library reporting a failed background save as Orbax does when the disk
# fills up (absl's logging.exception from its threads), then the error.
FULL_DISK_COMMAND = """
import threading
from absl import logging
from jaxfp.core import console

def save():
  try:
    raise ValueError('RESOURCE_EXHAUSTED: No space left on device')
  except ValueError:
    logging.exception('Save Finalize thread (save_finalize) failed.')

@console.command
def main(argv):
  for _ in range(4):
    thread = threading.Thread(target=save)
    thread.start()
    thread.join()
  raise OSError('checkpoint of step 2 could not be written: No space left '
                'on device')

console.run(main)
"""


def test_library_tracebacks_only_at_verbosity_one():
  """Issue 22, case 8: a full disk during checkpointing showed 4 Orbax
  tracebacks (310 lines) before the error line; each report is now one
  line, its traceback only at --verbosity=1."""
  def run(*args):
    return subprocess.run([sys.executable, '-c', FULL_DISK_COMMAND, *args],
                          env=subprocs.child_env(), cwd=subprocs.REPO,
                          capture_output=True, text=True, timeout=120,
                          check=False)
  quiet = run()
  assert quiet.returncode == 2
  lines = quiet.stderr.splitlines()
  assert 'Traceback' not in quiet.stderr, quiet.stderr
  assert len(lines) == 5, quiet.stderr
  assert lines[-1] == ('error: checkpoint of step 2 could not be written: No '
                       'space left on device')
  assert all('Save Finalize thread' in line for line in lines[:4])
  verbose = run('--verbosity=1')
  assert verbose.stderr.count('Traceback') == 5
