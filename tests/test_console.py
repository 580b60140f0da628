"""The console: progress lines in a log, user errors as one line."""

import logging

from absl import app
import pytest

from jaxfp.core import console


@pytest.fixture
def clock(caplog, monkeypatch):
  """A settable clock ([seconds]) for Progress in a log (no terminal)."""
  now = [0.0]
  monkeypatch.setattr(console.time, 'monotonic', lambda: now[0])
  monkeypatch.setattr(console.sys.stderr, 'isatty', lambda: False)
  caplog.set_level(logging.INFO)
  return now


def test_progress_in_a_log_is_a_line_at_each_third(caplog, monkeypatch):
  clock = iter(range(100))
  monkeypatch.setattr(console.time, 'monotonic', lambda: float(next(clock)))
  monkeypatch.setattr(console.sys.stderr, 'isatty', lambda: False)
  caplog.set_level(logging.INFO)
  with console.Progress(9, what='train', every_s=1000) as progress:
    for step in range(1, 10):
      progress.update(step, loss=1.0 / step)
  lines = [r.getMessage() for r in caplog.records]
  assert [line.split(',')[0] for line in lines] == [
      'train: 3/9 steps (33%)', 'train: 6/9 steps (67%)',
      'train: 9/9 steps (100%)']
  assert 'steps/s' in lines[0] and 'ETA' in lines[0] and 'loss' in lines[0]
  assert 'ETA' not in lines[-1]  # Done.


def test_a_line_seconds_after_another_keeps_the_longer_windows_rate(
    caplog, clock):
  """A timed line at step 1995, then the two-thirds line at step 2000 after
  a 19 s stall: the rate is not 5 steps / 19 s."""
  now = clock
  with console.Progress(3000, what='train', every_s=600) as progress:
    for step, t in ((1995, 600.0), (2000, 619.0)):
      now[0] = t
      progress.update(step)
  lines = [r.getMessage() for r in caplog.records]
  assert [line.split(',')[0] for line in lines] == [
      'train: 1995/3000 steps (66%)', 'train: 2000/3000 steps (67%)']
  assert '3.33 steps/s' in lines[0] and '3.33 steps/s' in lines[1]


def test_time_spent_paused_is_left_out_of_the_rate(caplog, clock):
  """An evaluation of 600 s, then 14 steps in 70 s: 0.2 steps/s, not
  14 / 670 (the ETA of hours that a run minutes from its end showed)."""
  now = clock
  with console.Progress(240, what='train', every_s=60) as progress:
    now[0] = 100.0
    progress.update(60)  # A timed line, the rate over 100 s.
    with progress.paused():
      now[0] = 700.0
    now[0] = 770.0
    progress.update(74)
  lines = [r.getMessage() for r in caplog.records]
  assert lines[-1].startswith('train: 74/240 steps (31%), 0.2 steps/s, '
                              'ETA 13m50s'), lines


def test_a_user_error_is_one_line_and_status_two(capsys):
  @console.command
  def main(argv):
    del argv
    raise ValueError('config.data.fold is 4; need 0 to 3')

  assert main(['cmd']) == 2
  assert capsys.readouterr().err == (
      'error: config.data.fold is 4; need 0 to 3\n')

  @console.command
  def usage(argv):
    raise app.UsageError(f'unexpected arguments {argv[1:]}')

  assert usage(['cmd', 'x']) == 2

  @console.command
  def fine(argv):
    del argv

  assert fine(['cmd']) == 0


def test_a_bug_is_not_a_user_error():
  @console.command
  def main(argv):
    del argv
    raise KeyError('a bug')

  with pytest.raises(KeyError):
    main(['cmd'])


def test_the_first_step_which_compiles_is_left_out_of_the_rate(
    caplog, clock):
  """Step 1 takes 10 s (the compile), then 99 steps take 5 s: the rate is
  19.8 steps/s, not 100 / 15."""
  now = clock
  with console.Progress(300, what='train', every_s=600) as progress:
    now[0] = 10.0
    progress.update(1)
    now[0] = 15.0
    progress.update(100)
  lines = [r.getMessage() for r in caplog.records]
  assert lines == ['train: 100/300 steps (33%), 19.8 steps/s, ETA 10s'], lines


def test_a_first_step_that_is_a_third_still_shows(caplog, clock):
  now = clock
  with console.Progress(3, what='zoo', unit='generators') as progress:
    for step in (1, 2, 3):
      now[0] += 2.0
      progress.update(step)
  lines = [r.getMessage() for r in caplog.records]
  assert [line.split(',')[0] for line in lines] == [
      'zoo: 1/3 generators (33%)', 'zoo: 2/3 generators (67%)',
      'zoo: 3/3 generators (100%)']
  assert '0.5 generators/s' in lines[1]
