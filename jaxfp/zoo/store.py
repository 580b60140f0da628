"""Putting a zoo on disk atomically, and the config-keyed cache of zoos.

A zoo is built in a hidden sibling directory and renamed into place, so a
reader sees either no zoo or a complete one, even if the build is killed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import ml_collections
from absl import logging

from jaxfp.zoo import build as build_lib
from jaxfp.zoo import config as config_lib


def is_zoo(path: str) -> bool:
  """Whether `path` holds a complete zoo (zoo.json is written last)."""
  return os.path.isfile(os.path.join(path, build_lib.ZOO_JSON))


def _replaceable(path: str) -> bool:
  return (not os.path.lexists(path) or is_zoo(path)
          or (os.path.isdir(path) and not os.listdir(path)))


def _build_beside(config: ml_collections.ConfigDict, path: str) -> str:
  """Builds into a fresh hidden sibling of `path`; returns the sibling."""
  parent, base = os.path.split(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  partial = tempfile.mkdtemp(prefix=f'.{base}.partial-', dir=parent)
  os.chmod(partial, 0o755)  # mkdtemp's 0700 would travel with the rename.
  try:
    build_lib.build(config, partial)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return partial


def generate(config: ml_collections.ConfigDict, out_dir: str) -> str:
  """Builds the zoo of `config` at `out_dir`; returns out_dir.

  An existing zoo (or empty directory) at out_dir is replaced once the new one
  is complete; anything else there is an error, raised before any work.
  """
  config_lib.validate(config)
  out_dir = os.fspath(out_dir)
  if not _replaceable(out_dir):
    raise FileExistsError(f'{out_dir} exists and is not a zoo or an empty '
                          'directory; refusing to replace it')
  partial = _build_beside(config, out_dir)
  if is_zoo(out_dir):
    parent, base = os.path.split(os.path.abspath(out_dir))
    old = os.path.join(parent, f'.{base}.old-{uuid.uuid4().hex[:8]}')
    os.replace(out_dir, old)
    os.replace(partial, out_dir)
    shutil.rmtree(old, ignore_errors=True)
  else:
    try:
      os.replace(partial, out_dir)  # Succeeds onto an empty directory.
    except OSError:
      shutil.rmtree(partial, ignore_errors=True)
      raise
  return out_dir


def cache_path(config: ml_collections.ConfigDict, cache_root: str) -> str:
  return os.path.join(os.fspath(cache_root),
                      f'zoo-{config_lib.config_hash(config)}')


def cached(config: ml_collections.ConfigDict, cache_root: str) -> str:
  """cache_root/zoo-<config hash>, built first if it does not exist yet."""
  config_lib.validate(config)
  path = cache_path(config, cache_root)
  if is_zoo(path):
    logging.info('zoo: using cached %s', path)
    return path
  if os.path.lexists(path) and not _replaceable(path):
    raise FileExistsError(f'{path} exists but is not a complete zoo; remove '
                          'it to rebuild')
  partial = _build_beside(config, path)
  try:
    os.replace(partial, path)
  except OSError:
    # Another process finished the same zoo first; keep theirs.
    shutil.rmtree(partial, ignore_errors=True)
    if not is_zoo(path):
      raise
  return path
