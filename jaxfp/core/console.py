"""What a command shows on the terminal: verbosity, progress, errors.

Every command (`python -m jaxfp.<command>`) runs its main through `run`.
absl's --verbosity 0, the default, shows jaxfp's own INFO lines and
everyone's warnings; 1 and more the libraries' INFO lines, progress bars
and tracebacks too; -1 warnings only. `Progress` is the one progress
display. A user error (app.UsageError, ValueError, OSError) is one line
`error: ...` on stderr and exit status 2. What a user sees:
docs/console.md.

The state lives where absl and `logging` keep theirs (the verbosity flag,
the handler's filters), not in this module.
"""

from __future__ import annotations

import contextlib
import functools
import logging as std_logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

from absl import app
from absl import flags
from absl import logging
import tqdm

# Errors that say what the user asked for is wrong, not that jaxfp is.
USER_ERRORS = (app.UsageError, ValueError, OSError)
# The package's own source files: their INFO lines are shown by default.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def verbose() -> bool:
  """--verbosity is 1 or more: library INFO lines and tracebacks too."""
  return logging.level_debug()


def _own_info_only(record) -> bool:
  """A logging filter: INFO lines of jaxfp's code, warnings of everyone;
  a library's report keeps its first line, not its traceback (Orbax logs
  one per background thread when a save fails, burying the error line)."""
  own = record.pathname.startswith(_PACKAGE_DIR)
  if not own and (record.exc_info or record.stack_info):
    first = (record.getMessage().splitlines() or [''])[0]
    record.msg, record.args = first, ()
    record.exc_info = record.exc_text = record.stack_info = None
  return _warnings_only(record) or own


def _warnings_only(record) -> bool:
  """A logging filter for a noisy stretch: warnings and errors only."""
  return record.levelno >= logging.converter.STANDARD_WARNING


def configure() -> None:
  """Applies --verbosity to the libraries; safe to call again."""
  handler = logging.get_absl_handler()
  quiet = not verbose()
  handler.removeFilter(_own_info_only)
  if quiet:
    handler.addFilter(_own_info_only)
  # Read by TensorFlow's C++ runtime when it loads, which happens later:
  # jaxfp imports TensorFlow only when it reads or writes data.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2' if quiet else '0')


def warnings_only() -> None:
  """This process shows warnings only (a multi-host run's other processes
  would repeat process 0's lines)."""
  logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def quietly(what: str) -> Iterator[None]:
  """A long stretch of library work shown as two lines, its own INFO lines
  only at --verbosity=1 (e.g. the zoo's line per generator)."""
  logging.info('%s...', what)
  start = time.monotonic()
  handler = logging.get_absl_handler()
  hush = None if verbose() else _warnings_only
  if hush:
    handler.addFilter(hush)
  try:
    yield
  finally:
    if hush:
      handler.removeFilter(hush)
  logging.info('%s: done in %.0f s', what, time.monotonic() - start)


def count(n: int, noun: str, plural: str | None = None) -> str:
  """'1 image', '2 images' (or `plural`)."""
  return f'{n} {noun if n == 1 else plural or noun + "s"}'


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  if seconds >= 60:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds}s'


# The shortest window a progress line's steps/s is measured over.
MIN_RATE_WINDOW_S = 60.0


class Progress:
  """One progress display of `total` steps, with steps/s and ETA.

  On a terminal: a tqdm bar on stderr, redrawn in place. Otherwise (a log
  file, a pipe): an INFO line at each third of the run, and at least every
  `every_s` seconds in between for long runs. The rate is measured since the
  previous line (over at least MIN_RATE_WINDOW_S), and never over the
  first step, which compiles.
  """

  def __init__(self, total: int, *, initial: int = 0, what: str = 'train',
               unit: str = 'steps', every_s: float = 600.0,
               enabled: bool = True):
    self.total, self.what, self.unit = total, what, unit
    self.n = initial
    self.every_s = every_s
    self.enabled = enabled
    self.postfix = {}
    self.rate = float('nan')
    self._last = (time.monotonic(), initial)
    self._first = initial + 1
    self._bar = None
    if enabled and sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total, initial=initial, desc=what,
                            unit=f' {unit}', file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.05)

  def update(self, n: int, **postfix) -> None:
    """Now at step `n` (absolute); `postfix` values show beside the rate."""
    self.postfix.update(postfix)
    previous, self.n = self.n, n
    if not self.enabled:
      return
    if self._bar is not None:
      if postfix:
        self._bar.set_postfix(self.postfix, refresh=False)
      self._bar.update(n - previous)
      self.rate = self._bar.format_dict.get('rate') or self.rate
      return
    now = time.monotonic()
    if n == self._first and previous == self._first - 1:
      self._last = (now, n)  # The first step compiles: the rate starts after.
    last_time, last_n = self._last
    third = int(3 * n / max(self.total, 1)) > int(
        3 * previous / max(self.total, 1))
    if n > previous and (third or now - last_time >= self.every_s):
      # A third that comes seconds after a timed line would give a rate of
      # a few steps: such a line keeps the rate of the window before it.
      if n > last_n and (now - last_time >= MIN_RATE_WINDOW_S or
                         self.rate != self.rate):
        self.rate = (n - last_n) / max(now - last_time, 1e-9)
        self._last = (now, n)
      logging.info('%s', self.line())

  @contextlib.contextmanager
  def paused(self):
    """Time spent inside (an evaluation, a checkpoint) is left out of the
    rate."""
    start = time.monotonic()
    try:
      yield
    finally:
      last_time, last_n = self._last
      self._last = (last_time + time.monotonic() - start, last_n)
      if self._bar is not None:
        self._bar.unpause()

  def line(self) -> str:
    """'train: 500/1500 steps (33%), 2.31 steps/s, ETA 7m12s, loss 12.3'."""
    parts = [f'{self.what}: {self.n}/{self.total} {self.unit} '
             f'({100 * self.n / max(self.total, 1):.0f}%)']
    if self.rate == self.rate and self.rate > 0:
      parts.append(f'{self.rate:.3g} {self.unit}/s')
      if self.n < self.total:
        parts.append(f'ETA {_duration((self.total - self.n) / self.rate)}')
    parts += [f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
              for k, v in self.postfix.items()]
    return ', '.join(parts)

  def note(self, message: str) -> None:
    """A line above the bar (a terminal) or an INFO line (otherwise)."""
    if self._bar is not None:
      self._bar.write(message, file=sys.stderr)
    else:
      logging.info('%s', message)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> bool:
    self.close()
    return False


@contextlib.contextmanager
def native_output_hushed() -> Iterator[None]:
  """What native libraries write to stderr meanwhile is dropped, unless
  --verbosity=1: TensorFlow's C++ start-up lines (a oneDNN notice, absl's
  pre-initialisation warning) come before TF_CPP_MIN_LOG_LEVEL applies."""
  if verbose():
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


_EVENT_LOOP_CLOSED = 'Event loop is closed'


def _is_event_loop_noise(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and _EVENT_LOOP_CLOSED in str(error)


def _no_event_loop_noise(record) -> bool:
  """A logging filter: drops 'Event loop is closed' reports (see
  `hush_event_loop_noise`)."""
  error = record.exc_info[1] if record.exc_info else None
  return not (_is_event_loop_noise(error) or
              _EVENT_LOOP_CLOSED in record.getMessage())


def hush_event_loop_noise() -> None:
  """Drops Orbax's background-thread 'Event loop is closed' reports.

  When a command stops on an error while Orbax's threads still run, their
  asyncio loops are closed under them, and each thread reports
  `RuntimeError: Event loop is closed` with a traceback (through
  threading.excepthook, sys.unraisablehook or the asyncio logger), often
  dozens of them, burying the one line that says what went wrong. They say
  nothing about the error, so they are dropped unless --verbosity=1.
  Idempotent.
  """
  if verbose() or getattr(threading.excepthook, 'hushes_event_loop', False):
    return

  def without_noise(hook):
    def on_error(args):
      if not _is_event_loop_noise(args.exc_value):
        hook(args)
    on_error.hushes_event_loop = True
    return on_error

  threading.excepthook = without_noise(threading.excepthook)
  sys.unraisablehook = without_noise(sys.unraisablehook)
  for handler in (logging.get_absl_handler(),
                  *std_logging.getLogger('asyncio').handlers):
    handler.addFilter(_no_event_loop_noise)
  std_logging.getLogger('asyncio').addFilter(_no_event_loop_noise)


def command(main: Callable[[list[str]], int | None]
            ) -> Callable[[list[str]], int]:
  """`main` with --verbosity applied and user errors as one line.

  The wrapped main returns the exit status: main's own (None is 0), or 2
  after printing `error: ...` for a user error. At --verbosity=1 and more
  the error propagates with its traceback instead.
  """
  @functools.wraps(main)
  def wrapped(argv: list[str]) -> int:
    configure()
    hush_event_loop_noise()
    try:
      status = main(argv)
    except USER_ERRORS as e:
      if verbose():
        raise
      print(f'error: {e}', file=sys.stderr)
      return 2
    except KeyboardInterrupt:
      # Ctrl-C where nothing saves (or a second one): a line, not a stack.
      if verbose():
        raise
      print('interrupted (Ctrl-C)', file=sys.stderr)
      return 130
    return 0 if status is None else int(status)
  return wrapped


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a bad or missing flag, a config file that fails or
  an override of a field the config lacks is a user error (status 2)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    # A config file's error comes with its traceback inside the message:
    # its first line says which flag, its last what went wrong.
    lines = [line for line in str(e).splitlines() if line.strip()]
    message = lines[0] if len(lines) < 2 else f'{lines[0]} {lines[-1]}'
  except (AttributeError, KeyError) as e:
    # ml_collections' --config.<field>=... overrides of unknown fields.
    message = f'the config has no field {str(e).strip(chr(34))}'
  except (TypeError, ValueError) as e:
    message = str(e)
  print(f'error: {message} (see --helpshort)', file=sys.stderr)
  sys.exit(2)


def run(main: Callable[[list[str]], int]) -> None:
  """Runs a `command`-wrapped main as the program; exits with its status."""
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)
