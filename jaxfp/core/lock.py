"""One trainer per workdir: a lock file naming its holder.

Two trainers on one workdir would both resume from the same checkpoint and
race on writing the next ones. `acquire(workdir)` creates
`<workdir>/jaxfp.lock` holding the owner's host, process id and start time,
or raises `WorkdirInUse` naming the holder: a file, not a flock, since a
flock does not hold across the hosts of a network file system (a pod's
shared workdir). The file appears at once with its whole content (written
beside it, then hard-linked into place, which fails if a lock is there), so
a reader never sees half of one; where a file system has no hard links, an
exclusive create does the same but for that.

A lock whose holder is gone is stale: on the holder's own host a process id
that is not running (or that now belongs to a process started later) is
taken over, with a warning. A lock of another host cannot be checked from
here; the error says which host and process to look for, and that deleting
the file releases it. Takeovers on one host are serialised with `flock` on
the workdir, so two processes cannot both take over the same stale lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import sys
import time

from absl import logging

LOCK_NAME = 'jaxfp.lock'


class WorkdirInUse(OSError):
  """The workdir is locked by another live process; the message names it."""


@dataclasses.dataclass(frozen=True)
class Owner:
  host: str
  pid: int
  pid_start: str | None  # The kernel's start time of pid (Linux), or None.
  since: str = ''
  command: str = ''

  def describe(self) -> str:
    since = f' since {self.since}' if self.since else ''
    return f'process {self.pid} on host {self.host}{since} ({self.command})'


def _start_time(pid: int) -> str | None:
  """The start time of process `pid` in clock ticks since boot (Linux), so
  a process id reused by a later process is told apart."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      # The command name (field 2) may hold spaces; fields after ')' split.
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def this_process() -> Owner:
  pid = os.getpid()
  return Owner(host=socket.gethostname(), pid=pid, pid_start=_start_time(pid),
               since=time.strftime('%Y-%m-%d %H:%M:%S'),
               command=' '.join(sys.argv)[:200])


def _running(owner: Owner) -> bool:
  """Whether `owner` may still run (True when it cannot be told)."""
  if owner.host != socket.gethostname():
    return True
  try:
    os.kill(owner.pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Another user's process: running.
  start = _start_time(owner.pid)
  return owner.pid_start is None or start is None or start == owner.pid_start


def _read(path: str) -> Owner | None:
  """The lock's owner; None if the file is gone or not a lock file."""
  try:
    with open(path) as f:
      fields = json.load(f)
    return Owner(**{k: fields[k] for k in ('host', 'pid', 'pid_start',
                                           'since', 'command')})
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _create(path: str, owner: Owner) -> bool:
  """Creates the lock file holding `owner`; False if one exists."""
  content = json.dumps(dataclasses.asdict(owner))
  temporary = f'{path}.{owner.host}.{owner.pid}.tmp'
  with open(temporary, 'w') as f:
    f.write(content)
  try:
    os.link(temporary, path)
    return True
  except FileExistsError:
    return False
  except OSError:
    pass  # No hard links here (some FUSE mounts): an exclusive create.
  finally:
    os.remove(temporary)
  try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, 'w') as f:
    f.write(content)
  return True


@contextlib.contextmanager
def _serialised(workdir: str):
  """An exclusive flock on the workdir folder (one host's processes)."""
  fd = os.open(workdir, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
      pass  # A file system without flock: best effort.
    yield
  finally:
    os.close(fd)  # Releases the flock.


@dataclasses.dataclass
class Lock:
  """A held workdir lock; `release` removes the file if it is still ours."""
  path: str
  owner: Owner

  def release(self) -> None:
    if _read(self.path) == self.owner:
      os.remove(self.path)


def acquire(workdir: str) -> Lock:
  """Locks `workdir` (an existing folder) for this process, taking over a
  stale lock; raises WorkdirInUse if a live process holds it."""
  path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
  me = this_process()
  for _ in range(3):
    if _create(path, me):
      return Lock(path, me)
    holder = _read(path)
    if holder is None:
      if os.path.exists(path):
        raise WorkdirInUse(f'{path} exists but is not a jaxfp lock file; '
                           f'delete it if no run uses {workdir}')
      continue  # Released meanwhile.
    if _running(holder):
      raise WorkdirInUse(
          f'workdir {workdir} is in use by {holder.describe()}: another run '
          f'trains there (lock file {path}); wait for it, use another '
          '--workdir, or delete the lock file if that process is gone')
    with _serialised(os.path.dirname(path)):
      if _read(path) == holder:
        logging.warning('Taking over the lock %s of %s, which is no longer '
                        'running.', path, holder.describe())
        os.remove(path)
  raise WorkdirInUse(f'could not lock workdir {workdir} ({path} keeps '
                     'changing hands)')
