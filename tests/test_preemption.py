"""SIGTERM: the trainer saves a checkpoint, exits 0, and the next launch
resumes from it."""

import json
import os
import re
import signal
import sys

import pytest

from jaxfp.core import preemption
import subprocs

TRAINER_TIMEOUT_S = 400


def test_signal_is_recorded_not_fatal_and_the_handler_restored():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopOnSignal() as stop:
    assert not stop.requested(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested(2)
    assert stop.reason == 'SIGTERM'
  assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture(scope='session')
def zoo_cache(tmp_path_factory):
  # The same directory as tests/test_multihost.py's: the zoo is built once.
  return tmp_path_factory.getbasetemp() / 'jaxfp-trainer-cache'


def test_sigterm_saves_the_step_exits_zero_and_the_next_launch_resumes(
    tmp_path, zoo_cache):
  workdir = tmp_path / 'run'
  env = subprocs.child_env(devices=4)

  def launch(num_train_steps, name):
    return subprocs.Child(
        [sys.executable, '-m', 'jaxfp.main', '--config=configs/fen.py:test',
         f'--workdir={workdir}', f'--config.data.cache_dir={zoo_cache}',
         f'--config.num_train_steps={num_train_steps}',
         '--config.checkpoint_every_steps=2',
         '--config.eval_every_steps=1000'],
        env, tmp_path / f'{name}.log')

  first = launch(1000, 'first')
  subprocs.wait_for(lambda: subprocs.checkpoint_steps(workdir), [first],
                    TRAINER_TIMEOUT_S, 'the first checkpoint')
  subprocs.terminate(first)
  assert subprocs.wait_all([first], TRAINER_TIMEOUT_S) == [0]
  saved = re.findall(r'Stop requested \(SIGTERM\): saving step (\d+)',
                     first.output())
  assert len(saved) == 1, first.tail()
  stop_step = int(saved[0])
  assert subprocs.checkpoint_steps(workdir)[-1] == stop_step
  assert not (workdir / 'results.json').exists()

  second = launch(stop_step + 2, 'second')
  subprocs.wait_all([second], TRAINER_TIMEOUT_S)
  assert (f'Resuming from the checkpoint of step {stop_step}'
          in second.output())
  with open(workdir / 'results.json') as f:
    assert json.load(f)['step'] == stop_step + 2
  assert subprocs.checkpoint_steps(workdir)[-1] == stop_step + 2
