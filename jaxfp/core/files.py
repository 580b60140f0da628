"""Writing result files so that a reader never sees half of one.

`write_text` and `write_bytes` write a temporary file beside the target and
rename it into place: on POSIX a rename within one folder is atomic, so a
process killed mid-write (or a disk that fills up) leaves the old file or
none, never an empty or truncated one that a later reader (a sweep counting
finished runs) would trust. `check_output_folder` and `check_output_file`
fail before any work when a file cannot be written where the user asked,
or would replace (or land among) the command's own inputs.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` (UTF-8) atomically."""
  write_bytes(path, text.encode('utf-8'))


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, temporary = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                                   suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would travel with the name.
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def json_safe(value):
  """`value` with every NaN or infinite float (numpy's too) as None: JSON
  has no NaN, and strict readers reject Python's `NaN` token."""
  if isinstance(value, dict):
    return {k: json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def dumps(payload, **kwargs) -> str:
  """Strict JSON of `payload`: non-finite floats become null."""
  return json.dumps(json_safe(payload), allow_nan=False, **kwargs)


def write_json(path: str, payload, **kwargs) -> None:
  """`payload` as strict JSON (`dumps`), atomically."""
  write_text(path, dumps(payload, **kwargs) + '\n')


def check_not_input(path: str, what: str, inputs: Sequence[str]) -> None:
  """Raises ValueError naming `what` when `path` is one of `inputs` (files
  or folders a command reads) or lies inside an input folder: an output
  written there would replace an input, or be read as one next time.

  Paths are compared after resolving links, so another spelling of the
  same file or folder is caught too.
  """
  real = os.path.realpath(os.path.expanduser(path))
  for given in inputs:
    source = os.path.realpath(os.path.expanduser(os.fsdecode(given)))
    if real == source:
      raise ValueError(f'{what} {path} is also an input ({given}); '
                       'write the output elsewhere')
    if os.path.isdir(source) and real.startswith(source.rstrip(os.sep) +
                                                 os.sep):
      raise ValueError(f'{what} {path} lies inside the input folder '
                       f'{given}; write the output outside it')


def check_outputs_apart(outputs: dict[str, str | None],
                        inputs: Sequence[str]) -> None:
  """`check_not_input` for each {flag: path} of `outputs` that is set."""
  for what, path in outputs.items():
    if path:
      check_not_input(path, what, inputs)


def check_output_folder(path: str, what: str,
                        inputs: Sequence[str] = ()) -> str:
  """`path` as an existing, writable folder, created if need be; an OSError
  naming `what` (e.g. '--workdir') and the problem otherwise. A folder that
  is, or lies inside, one of `inputs` is refused (`check_not_input`)."""
  check_not_input(path, what, inputs)
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.lexists(path) and not os.path.isdir(path):
    raise NotADirectoryError(f'{what} {path} is a file, not a folder')
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise OSError(f'{what} {path} cannot be created: '
                  f'{e.strerror or e}') from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise PermissionError(f'{what} {path} is not writable')
  return path


def check_output_file(path: str, what: str,
                      inputs: Sequence[str] = ()) -> str:
  """`path` as a file that can be written: not a folder, in a folder that
  exists and is writable, and not one of `inputs` nor inside an input
  folder (`check_not_input`)."""
  check_not_input(path, what, inputs)
  path = os.path.abspath(os.path.expanduser(path))
  folder = os.path.dirname(path)
  if os.path.isdir(path):
    raise IsADirectoryError(f'{what} {path} is a folder; give a file name')
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'{what} {path}: folder {folder} does not exist')
  if not os.access(folder, os.W_OK | os.X_OK):
    raise PermissionError(f'{what} {path}: folder {folder} is not writable')
  return path
