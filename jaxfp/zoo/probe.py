"""A cheap check that the loss recipe shapes training: the trace probe.

Every step logs the reconstruction-type terms (`programs.METRICS`) whether or
not the recipe trains on them. If a recipe leaves a trace, a term falls
further over training in GMs whose recipe holds it than in GMs of the same
family whose recipe does not. Per family and term:

  change = mean over GMs of log(late / early)

with early/late the means over the first/last tenth of the steps, for GMs
with the term on their recipe ('on') and without ('off'). Negative is a fall;
'on' well below 'off' is the trace. It says nothing about what a parser can
see in the images, only whether training took the recipe's direction.
"""

from __future__ import annotations

import math

import numpy as np

from jaxfp.zoo import programs as programs_lib


def trace_probe(entries: dict) -> dict:
  """{family: {term: {'on': mean change, 'n_on': k, 'off': .., 'n_off': ..}}}
  from zoo.json's per-GM entries."""
  out = {}
  families = sorted({e['labels']['family'] for e in entries.values()})
  for family in families:
    gms = [e for e in entries.values() if e['labels']['family'] == family]
    terms = {}
    for term in programs_lib.METRICS:
      groups = {'on': [], 'off': []}
      for e in gms:
        early = e['training']['early'][term]
        late = e['training']['late'][term]
        if early > 0 and late > 0 and math.isfinite(early + late):
          groups['on' if e['labels'][term] else 'off'].append(
              math.log(late / early))
      terms[term] = {}
      for side, changes in groups.items():
        terms[term][side] = (round(float(np.mean(changes)), 4) if changes
                             else None)
        terms[term][f'n_{side}'] = len(changes)
    out[family] = terms
  return out


def describe(probe: dict) -> list[str]:
  """One line per family: each term's change on recipe / off recipe."""
  def fmt(v):
    return '  -  ' if v is None else f'{v:+.2f}'
  lines = []
  for family, terms in probe.items():
    parts = [f'{t} {fmt(s["on"])}/{fmt(s["off"])}' for t, s in terms.items()]
    lines.append(f'trace probe, {family}, log(late/early) on/off recipe: '
                 + ', '.join(parts))
  return lines
