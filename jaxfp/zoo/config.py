"""The zoo's configuration: validation, a stable hash for caching (the
defaults are in configs/zoo.py)."""

from __future__ import annotations

import hashlib
import json
import numbers

import ml_collections

from jaxfp.zoo import architecture as arch_lib

# Bumped whenever the generated zoo would change for the same config, so that
# caches built by older code are not reused.
FORMAT_VERSION = 3

FAMILIES = arch_lib.FAMILIES


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first field with an impossible value."""
  minimums = {
      'num_generators': 1,
      'images_per_generator': 1,
      'image_size': 16,
      'train_steps': 1,
      'train_batch_size': 1,
      'train_crop_size': 8,
      'generation_batch_size': 1,
  }
  for field, low in minimums.items():
    if field not in config:
      raise ValueError(f'zoo config lacks the field {field!r}')
    value = config[field]
    if not _is_int(value) or value < low:
      raise ValueError(f'zoo config {field}={value!r} must be an integer >= '
                       f'{low}')
  families = config.get('families')
  if (not isinstance(families, (tuple, list)) or not families
      or len(set(families)) != len(families)
      or not set(families) <= set(FAMILIES)):
    raise ValueError(f'zoo config families={families!r} must be distinct '
                     f'names among {list(FAMILIES)}')
  # Image-to-image nets upsample once by 2; noise-to-image nets up to four
  # times from a latent map at 1/16 of the size.
  factor = 2 ** max(arch_lib.NOISE_BLOCKS) if set(families) - {
      'image_to_image'} else 2
  for field in ('image_size', 'train_crop_size'):
    if config[field] % factor:
      raise ValueError(f'zoo config {field}={config[field]} must be '
                       f'divisible by {factor} for the families '
                       f'{list(families)}')
  for field in ('learning_rate', 'seed'):
    if field not in config:
      raise ValueError(f'zoo config lacks the field {field!r}')
  lr = config.learning_rate
  if not isinstance(lr, numbers.Real) or isinstance(lr, bool) or not lr > 0:
    raise ValueError(f'zoo config learning_rate={lr!r} must be a number > 0')
  if not _is_int(config.seed) or config.seed < 0:
    raise ValueError(f'zoo config seed={config.seed!r} must be an integer '
                     '>= 0')


def crop_size(config: ml_collections.ConfigDict) -> int:
  """The side of the training crops: train_crop_size, at most image_size."""
  return min(config.train_crop_size, config.image_size)


def as_dict(config: ml_collections.ConfigDict) -> dict:
  """Plain JSON-able form with sorted keys."""
  return json.loads(json.dumps(config.to_dict(), sort_keys=True))


def config_hash(config: ml_collections.ConfigDict) -> str:
  """Short hash that changes with any config value or the zoo format."""
  payload = json.dumps({'format_version': FORMAT_VERSION,
                        'config': as_dict(config)}, sort_keys=True)
  return hashlib.sha256(payload.encode()).hexdigest()[:12]
