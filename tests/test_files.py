"""Result files written whole, and one trainer per workdir (the lock)."""

import json
import os
import subprocess
import sys

import pytest

from jaxfp.core import files
from jaxfp.core import lock
from jaxfp.tasks import common


def test_results_are_whole_or_untouched(tmp_path, monkeypatch):
  common.write_results(str(tmp_path), 4, 'header', 'table', {'metrics': {}})
  before = (tmp_path / 'results.json').read_text()
  assert json.loads(before)['step'] == 4

  def full_disk(*args, **kwargs):
    raise OSError(28, 'No space left on device')
  # A write that fails (a full disk, a crash) midway leaves the old file.
  monkeypatch.setattr(json, 'dump', full_disk)
  monkeypatch.setattr(json, 'dumps', full_disk)
  with pytest.raises(OSError, match='No space'):
    common.write_results(str(tmp_path), 6, 'header', 'table',
                         {'metrics': {}})
  assert (tmp_path / 'results.json').read_text() == before
  assert sorted(os.listdir(tmp_path)) == ['results.json', 'results.md']


def test_json_has_no_nan():
  assert files.dumps({'a': float('nan'), 'b': [1.0, float('inf')]}) == (
      '{"a": null, "b": [1.0, null]}')


def test_a_second_lock_names_the_holder_and_a_released_one_is_free(
    tmp_path):
  held = lock.acquire(str(tmp_path))
  with pytest.raises(lock.WorkdirInUse,
                     match=f'in use by process {os.getpid()} on host'):
    lock.acquire(str(tmp_path))
  held.release()
  assert not (tmp_path / lock.LOCK_NAME).exists()
  lock.acquire(str(tmp_path)).release()


def _write_lock(workdir, owner):
  with open(os.path.join(workdir, lock.LOCK_NAME), 'w') as f:
    json.dump(owner.__dict__, f)


def test_a_stale_lock_is_taken_over_and_another_hosts_is_not(tmp_path,
                                                             caplog):
  gone = subprocess.Popen([sys.executable, '-c', 'pass'])
  gone.wait()  # Its process id now names no running process.
  me = lock.this_process()
  _write_lock(tmp_path, lock.Owner(host=me.host, pid=gone.pid,
                                   pid_start=None))
  held = lock.acquire(str(tmp_path))
  assert held.owner.pid == os.getpid()
  assert 'no longer running' in caplog.text
  held.release()
  # A reused process id: running, but started after the lock was written.
  _write_lock(tmp_path, lock.Owner(host=me.host, pid=os.getpid(),
                                   pid_start='1'))
  lock.acquire(str(tmp_path)).release()
  _write_lock(tmp_path, lock.Owner(host='elsewhere', pid=1, pid_start=None))
  with pytest.raises(lock.WorkdirInUse, match='process 1 on host elsewhere'):
    lock.acquire(str(tmp_path))
