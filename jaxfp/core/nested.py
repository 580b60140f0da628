"""Nested dictionaries as one level of dotted keys.

Configs are compared, logged and saved as flat `{'data.fold': 0, ...}`
dicts: the trainer's hyperparameter summary, the evaluator's warnings about
config fields a checkpoint replaces and the sweep's check that a rerun has
the same config all use this one flattening.
"""

from __future__ import annotations

from collections.abc import Mapping


def flatten(d: Mapping, prefix: str = '') -> dict:
  """{'a': {'b': 1}, 'c': 2} -> {'a.b': 1, 'c': 2}, in the order of `d`.

  Only dicts are descended into (an empty one leaves no key); every other
  value, lists and tuples included, is a leaf kept as it is.
  """
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out
