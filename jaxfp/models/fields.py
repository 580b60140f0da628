"""Networks from their constructor fields, and fields from networks.

Fields are what a run's `config.model` holds (fen_depth, fen_width,
pn_channels or head_channels, dtype, ...) and what a converted published
checkpoint keeps in its meta 'model'. Training, evaluation, inference and
the converter all build their modules here, so the two sources always give
the same network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxfp import models
from jaxfp.core import schema as schema_lib
from jaxfp.models import embedding
from jaxfp.models import published as published_lib

# What `fields_of` records, when the module has it.
RECORDED = ('task', 'num_classes', 'fen_depth', 'fen_width', 'use_fen',
            'dropout_rate', 'pn_channels', 'head_channels', 'head_hidden',
            'pn_hidden', 'spectrum', 'spectrum_pool', 'colour_stats',
            'stage_stats', 'pn_members',
            'embed_dim', 'hidden', 'num_sources', 'trace_stats')


def _arguments(cls: type, fields: Mapping[str, Any]) -> dict[str, Any]:
  """The entries of `fields` that `cls` takes, as its constructor wants them:
  sequences as tuples, the dtype as a numpy dtype; other keys are ignored."""
  names = set(cls.__dataclass_fields__) - {'parent', 'name'}
  out = {k: tuple(v) if isinstance(v, (list, tuple)) else v
         for k, v in fields.items() if k in names}
  if 'dtype' in out:
    out['dtype'] = jnp.dtype(out['dtype'])
  return out


def parser(schema: schema_lib.Schema, fields: Mapping[str, Any], *,
           axis_name: str | None = None,
           published: bool = False) -> models.FingerprintParser:
  """FEN + PN for `schema`; `published`: the published sigmoid outputs."""
  cls = (published_lib.PublishedParser if published
         else models.FingerprintParser)
  return cls(schema, **_arguments(cls, fields), axis_name=axis_name)


def classifier(task: str, num_classes: int, fields: Mapping[str, Any], *,
               axis_name: str | None = None,
               published: bool = False) -> models.FingerprintClassifier:
  """FEN + the head of `task`; empty head_channels mean the published ones."""
  cls = (published_lib.PublishedClassifier if published
         else models.FingerprintClassifier)
  args = _arguments(cls, fields)
  args.update(task=task, num_classes=num_classes, axis_name=axis_name,
              head_channels=args.get('head_channels') or None)
  return cls(**args)


def embedder(fields: Mapping[str, Any], *, num_sources: int = 0,
             axis_name: str | None = None) -> embedding.SourceEmbedder:
  """The source embedder; `num_sources` > 0 adds the training proxies."""
  args = _arguments(embedding.SourceEmbedder, fields)
  args.update(num_sources=num_sources, axis_name=axis_name)
  return embedding.SourceEmbedder(**args)


def fields_of(module: nn.Module) -> dict[str, Any]:
  """JSON-ready constructor fields of `module` (the schema is kept apart)."""
  fields = {}
  for name in RECORDED:
    if hasattr(module, name):
      value = getattr(module, name)
      fields[name] = list(value) if isinstance(value, tuple) else value
  fields['dtype'] = jnp.dtype(module.dtype).name
  return fields
