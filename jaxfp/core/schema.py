"""What a generative model's ground truth holds, and the tables that hold it.

One `Schema` says which hyperparameters exist: continuous architecture parameters
(normalised to [0, 1] for training), discrete architecture parameters (each with
its class names), coarse loss-function groups and fine loss-function types (each
fine type belongs to one coarse group, which the hierarchical heads use). Models,
losses, metrics and reports read head counts and names from here, never from
literals.

A `GroundTruth` is one row per generative model (GM), addressed by GM name.
Missing labels are NaN (continuous) or -1 (discrete and loss types); losses and
metrics mask them out. Detectors and attributors name their classes instead
(sorted folder names); `fake_index` says which of a detector's is generated.

On disk a table is `ground_truth.csv` (one row per GM, raw units, class names
spelled out) next to `schema.json`. The published `.npy` tables (already
normalised, rows in sorted GM-folder order) load with `from_published_npy`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np

from jaxfp.core import files

MISSING = -1


@dataclasses.dataclass(frozen=True)
class DiscreteParam:
  name: str
  classes: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.classes)


@dataclasses.dataclass(frozen=True)
class Schema:
  """Names and shapes of every predicted hyperparameter."""
  continuous: tuple[str, ...]
  discrete: tuple[DiscreteParam, ...]
  coarse: tuple[str, ...]
  fine: tuple[str, ...]
  fine_to_coarse: tuple[int, ...]

  def __post_init__(self):
    if len(self.fine_to_coarse) != len(self.fine):
      raise ValueError(
          f'fine_to_coarse has {len(self.fine_to_coarse)} entries for '
          f'{len(self.fine)} fine loss types')
    bad = [g for g in self.fine_to_coarse if not 0 <= g < len(self.coarse)]
    if bad:
      raise ValueError(f'fine_to_coarse names coarse groups {bad} that do not '
                       f'exist (there are {len(self.coarse)})')

  @property
  def discrete_names(self) -> tuple[str, ...]:
    return tuple(p.name for p in self.discrete)

  @property
  def num_classes(self) -> tuple[int, ...]:
    return tuple(p.num_classes for p in self.discrete)

  @property
  def columns(self) -> tuple[str, ...]:
    """Every column of a ground-truth table after the GM name, in order."""
    return (self.continuous + self.discrete_names + self.coarse + self.fine)

  def to_dict(self) -> dict:
    return {
        'continuous': list(self.continuous),
        'discrete': {p.name: list(p.classes) for p in self.discrete},
        'coarse': list(self.coarse),
        'fine': list(self.fine),
        'fine_to_coarse': list(self.fine_to_coarse),
    }

  @classmethod
  def from_dict(cls, d: dict) -> Schema:
    try:
      return cls(
          continuous=tuple(d['continuous']),
          discrete=tuple(
              DiscreteParam(name, tuple(classes))
              for name, classes in d['discrete'].items()),
          coarse=tuple(d['coarse']),
          fine=tuple(d['fine']),
          fine_to_coarse=tuple(int(g) for g in d['fine_to_coarse']),
      )
    except KeyError as e:
      raise ValueError(f'schema is missing the key {e}') from None


# The 15 architecture columns of the published tables, in their order (our
# reading of the paper's names; see docs/published.md).
ARCHITECTURE_CONTINUOUS = (
    'num_layers', 'num_conv_layers', 'num_fc_layers', 'num_pooling_layers',
    'num_norm_layers', 'num_filters', 'num_blocks', 'layers_per_block',
    'num_parameters')

# The published code trains 3 coarse and 8 fine loss heads; the fine heads
# 1-4, 5-7 and 8 are gated by coarse groups 1, 2 and 3. The paper's names for
# them (and for the classes) are not in the published tables, so they stay
# generic here.
_CLASSES = tuple(f'class_{i}' for i in range(4))
PUBLISHED = Schema(
    continuous=ARCHITECTURE_CONTINUOUS,
    discrete=(
        DiscreteParam('normalization', _CLASSES),
        DiscreteParam('block_nonlinearity', _CLASSES),
        DiscreteParam('last_nonlinearity', _CLASSES),
        DiscreteParam('upsampling', _CLASSES[:2]),
        DiscreteParam('skip_connection', ('no', 'yes')),
        DiscreteParam('downsampling', ('no', 'yes')),
    ),
    coarse=('coarse_1', 'coarse_2', 'coarse_3'),
    fine=tuple(f'fine_{i}' for i in range(1, 9)),
    fine_to_coarse=(0, 0, 0, 0, 1, 1, 1, 2),
)

# The built-in zoo of generators (jaxfp/zoo) labels its models with this.
ZOO = Schema(
    continuous=ARCHITECTURE_CONTINUOUS,
    discrete=(
        DiscreteParam('normalization', ('none', 'batch', 'instance', 'layer')),
        DiscreteParam('block_nonlinearity', ('relu', 'leaky_relu', 'elu',
                                             'silu')),
        DiscreteParam('last_nonlinearity', ('none', 'tanh', 'sigmoid',
                                            'hard_tanh')),
        # Interpolation (nearest or bilinear) followed by a conv, against a
        # learned upsampler (transposed conv or pixel shuffle).
        DiscreteParam('upsampling', ('interpolation_conv', 'learned')),
        DiscreteParam('skip_connection', ('no', 'yes')),
        DiscreteParam('downsampling', ('no', 'yes')),
        # Image-to-image nets, GAN generators, VAE decoders (noise-to-image).
        DiscreteParam('family', ('image_to_image', 'gan', 'vae')),
    ),
    # 'latent': losses on the latent code (a VAE's KL to its prior).
    coarse=('pixel', 'feature', 'adversarial', 'latent'),
    fine=('pixel_l1', 'pixel_mse', 'gradient', 'spectral', 'total_variation',
          'adv_non_saturating', 'adv_least_squares', 'adv_hinge', 'kl'),
    fine_to_coarse=(0, 0, 1, 1, 1, 2, 2, 2, 3),
)


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """Hyperparameters of a set of GMs, one row each, in `gm_names` order."""
  schema: Schema
  gm_names: tuple[str, ...]
  continuous: np.ndarray  # [G, C] float32 in [0, 1], NaN where missing.
  discrete: np.ndarray  # [G, D] int32 class index, -1 where missing.
  coarse: np.ndarray  # [G, K] int32 in {0, 1}, -1 where missing.
  fine: np.ndarray  # [G, F] int32 in {0, 1}, -1 where missing.
  # [C, 2] raw (min, max) that map onto [0, 1]; NaN where unknown.
  continuous_range: np.ndarray

  def __post_init__(self):
    g = len(self.gm_names)
    s = self.schema
    expected = {
        'continuous': (g, len(s.continuous)),
        'discrete': (g, len(s.discrete)),
        'coarse': (g, len(s.coarse)),
        'fine': (g, len(s.fine)),
        'continuous_range': (len(s.continuous), 2),
    }
    for field, shape in expected.items():
      found = getattr(self, field).shape
      if found != shape:
        raise ValueError(f'ground truth {field} has shape {found}, the schema '
                         f'and {g} GMs need {shape}')
    if len(set(self.gm_names)) != g:
      dupes = sorted({n for n in self.gm_names if self.gm_names.count(n) > 1})
      raise ValueError(f'ground truth names GMs more than once: {dupes}')

  def __len__(self) -> int:
    return len(self.gm_names)

  def index(self, gm_name: str) -> int:
    try:
      return self.gm_names.index(gm_name)
    except ValueError:
      raise KeyError(f'GM {gm_name!r} has no row in the ground truth') from None

  def select(self, gm_names: Sequence[str]) -> GroundTruth:
    """The rows of `gm_names`, in that order."""
    rows = np.array([self.index(n) for n in gm_names], dtype=np.int64)
    return dataclasses.replace(
        self, gm_names=tuple(gm_names), continuous=self.continuous[rows],
        discrete=self.discrete[rows], coarse=self.coarse[rows],
        fine=self.fine[rows])

  def shuffled(self, rng: np.random.Generator) -> GroundTruth:
    """Each column permuted independently across GMs: the random baseline."""
    def permute_columns(table):
      out = table.copy()
      for j in range(table.shape[1]):
        out[:, j] = table[rng.permutation(len(table)), j]
      return out
    return dataclasses.replace(
        self, continuous=permute_columns(self.continuous),
        discrete=permute_columns(self.discrete),
        coarse=permute_columns(self.coarse), fine=permute_columns(self.fine))

  def denormalize(self, continuous: np.ndarray) -> np.ndarray:
    """Normalised continuous values back in raw units (NaN if unknown)."""
    lo, hi = self.continuous_range[:, 0], self.continuous_range[:, 1]
    return lo + continuous * (hi - lo)

  def to_dict(self) -> dict:
    """A JSON-serialisable form (dataset metadata, checkpoints); NaN is
    None."""
    return files.json_safe({
        'schema': self.schema.to_dict(),
        'gm_names': list(self.gm_names),
        'continuous': self.continuous.astype(np.float64).tolist(),
        'discrete': self.discrete.tolist(),
        'coarse': self.coarse.tolist(),
        'fine': self.fine.tolist(),
        'continuous_range': self.continuous_range.astype(np.float64).tolist(),
    })

  @classmethod
  def from_dict(cls, d: dict) -> GroundTruth:
    def floats(rows, width):
      a = np.array([[np.nan if v is None else v for v in r] for r in rows],
                   dtype=np.float32)
      return a.reshape(len(rows), width)
    def ints(rows, width):
      return np.array(rows, dtype=np.int32).reshape(len(rows), width)
    schema = Schema.from_dict(d['schema'])
    return cls(
        schema=schema, gm_names=tuple(d['gm_names']),
        continuous=floats(d['continuous'], len(schema.continuous)),
        discrete=ints(d['discrete'], len(schema.discrete)),
        coarse=ints(d['coarse'], len(schema.coarse)),
        fine=ints(d['fine'], len(schema.fine)),
        continuous_range=floats(d['continuous_range'], 2))


def fake_index(class_names: Sequence[str]) -> int:
  """Which of a detector's two classes is the generated one.

  Class folders sort by name, so 'fake' comes before 'real': the class named
  'fake', else the one not named 'real', else (published order) 1.
  """
  names = [n.lower() for n in class_names]
  if 'fake' in names:
    return names.index('fake')
  if 'real' in names and len(names) == 2:
    return 1 - names.index('real')
  return 1


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Inverse-frequency weights, total / count per class, as published.

  Counts are over the rows given (one per training GM) and ignore missing
  labels; a class absent from training gets weight 0, so it cannot dominate.
  """
  labels = labels[labels != MISSING]
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  with np.errstate(divide='ignore'):
    weights = np.where(counts > 0, counts.sum() / counts, 0.0)
  return weights.astype(np.float32)


# ------------------------------------------------------------------- files --

CSV_NAME = 'ground_truth.csv'
SCHEMA_NAME = 'schema.json'


def write_csv(directory: str, schema: Schema, gm_names: Sequence[str],
              rows: Sequence[dict]) -> str:
  """Writes `schema.json` and `ground_truth.csv` (raw units) to `directory`.

  Each row maps every schema column to its value: a number for continuous
  columns, a class name for discrete ones, 0/1 for loss types, None if missing.
  """
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, SCHEMA_NAME), 'w') as f:
    json.dump(schema.to_dict(), f, indent=2)
  path = os.path.join(directory, CSV_NAME)
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(('gm',) + schema.columns)
    for name, row in zip(gm_names, rows, strict=True):
      missing = [c for c in schema.columns if c not in row]
      if missing:
        raise ValueError(f'ground-truth row of {name!r} lacks {missing}')
      writer.writerow([name] + ['' if row[c] is None else row[c]
                                for c in schema.columns])
  return path


def read_csv(directory: str) -> GroundTruth:
  """Reads `ground_truth.csv` + `schema.json`; normalises continuous columns.

  Continuous columns are min-max scaled over the GMs of the table (a constant
  column maps to 0), and the raw range is kept for `denormalize`.
  """
  schema_path = os.path.join(directory, SCHEMA_NAME)
  csv_path = os.path.join(directory, CSV_NAME)
  for p in (schema_path, csv_path):
    if not os.path.exists(p):
      raise FileNotFoundError(f'ground truth file {p} does not exist')
  with open(schema_path) as f:
    schema = Schema.from_dict(json.load(f))
  # utf-8-sig: a spreadsheet's byte-order mark is no part of the first name.
  with open(csv_path, newline='', encoding='utf-8-sig') as f:
    reader = csv.DictReader(f)
    header = tuple(reader.fieldnames or ())
    _check_header(header, schema, csv_path, schema_path)
    records = list(reader)

  def parse(line, column, value, kind):
    where = f'{csv_path} line {line}, column {column!r}'
    if value.strip() == '':
      return kind['missing']
    try:
      parsed = kind['parse'](value)
    except (ValueError, KeyError, OverflowError):
      raise ValueError(f'{where}: cannot read {value!r} '
                       f'({kind["what"]})') from None
    if not np.isfinite(parsed):
      # An infinite value would make every other row's value 0 once scaled.
      raise ValueError(f'{where}: {value!r} is not a finite number (leave '
                       'the cell empty if the value is unknown)')
    return parsed

  names, cont, disc, coarse, fine = [], [], [], [], []
  first_line = {}
  for line, rec in enumerate(records, start=2):
    if rec['gm'] in first_line:
      raise ValueError(f'{csv_path} line {line}: GM {rec["gm"]!r} has a row '
                       f'already (line {first_line[rec["gm"]]})')
    first_line[rec['gm']] = line
    names.append(rec['gm'])
    cont.append([parse(line, c, rec[c], {
        'missing': np.nan, 'parse': float, 'what': 'a number'})
                 for c in schema.continuous])
    disc.append([parse(line, p.name, rec[p.name], {
        'missing': MISSING, 'parse': p.classes.index,
        'what': f'one of {list(p.classes)}'}) for p in schema.discrete])
    binary = {'missing': MISSING, 'parse': _binary, 'what': '0 or 1'}
    coarse.append([parse(line, c, rec[c], binary) for c in schema.coarse])
    fine.append([parse(line, c, rec[c], binary) for c in schema.fine])

  raw = np.array(cont, dtype=np.float64).reshape(len(names), -1)
  with np.errstate(all='ignore'):
    lo, hi = np.nanmin(raw, axis=0), np.nanmax(raw, axis=0)
  span = np.where(hi > lo, hi - lo, 1.0)
  normalized = (raw - lo) / span
  return GroundTruth(
      schema=schema, gm_names=tuple(names),
      continuous=normalized.astype(np.float32),
      discrete=np.array(disc, np.int32).reshape(len(names), -1),
      coarse=np.array(coarse, np.int32).reshape(len(names), -1),
      fine=np.array(fine, np.int32).reshape(len(names), -1),
      continuous_range=np.stack([lo, lo + span], axis=1).astype(np.float32))


def _check_header(header, schema: Schema, csv_path: str,
                  schema_path: str) -> None:
  """Raises naming the columns missing from, or unknown to, the schema."""
  if header[:1] != ('gm',):
    raise ValueError(f'{csv_path}: the first column is '
                     f'{header[0] if header else None!r}; expected gm')
  missing = [c for c in schema.columns if c not in header[1:]]
  extra = [c for c in header[1:] if c not in schema.columns]
  if missing or extra:
    parts = ([f'missing {missing}'] if missing else []) + (
        [f'not in {schema_path}: {extra}'] if extra else [])
    raise ValueError(f'{csv_path}: columns do not match the schema: ' +
                     '; '.join(parts))


def _binary(value: str) -> int:
  v = int(float(value))
  if v not in (0, 1):
    raise ValueError(value)
  return v


def from_published_npy(net_path: str, coarse_path: str, fine_path: str,
                       gm_names: Sequence[str],
                       schema: Schema = PUBLISHED) -> GroundTruth:
  """The published tables: rows follow the dataset's sorted GM folder order.

  `gm_names` names the rows (normally the sorted GM folder names); a count
  mismatch is an error naming both counts. Fine tables with more columns than
  the schema (the 116-GM table has 10) are cut to the schema's first columns.
  """
  net = np.load(net_path)
  coarse = np.load(coarse_path)
  fine = np.load(fine_path)
  for path, table in ((net_path, net), (coarse_path, coarse),
                      (fine_path, fine)):
    bad = np.argwhere(~np.isfinite(np.asarray(table, np.float64)))
    if len(bad):
      raise ValueError(f'{path}: row {bad[0][0]}, column {bad[0][1]} is '
                       f'{table[tuple(bad[0])]}, not a finite number')
    if len(table) != len(gm_names):
      raise ValueError(f'{path} has {len(table)} rows but there are '
                       f'{len(gm_names)} GMs; rows must follow the sorted GM '
                       'folder order')
  c = len(schema.continuous)
  expected_net = c + len(schema.discrete)
  if net.shape[1] != expected_net:
    raise ValueError(f'{net_path} has {net.shape[1]} columns, the schema needs '
                     f'{expected_net}')
  if fine.shape[1] < len(schema.fine) or coarse.shape[1] != len(schema.coarse):
    raise ValueError(f'{coarse_path} / {fine_path} have {coarse.shape[1]} / '
                     f'{fine.shape[1]} columns, the schema needs '
                     f'{len(schema.coarse)} / {len(schema.fine)}')
  return GroundTruth(
      schema=schema, gm_names=tuple(gm_names),
      continuous=net[:, :c].astype(np.float32),
      discrete=net[:, c:].astype(np.int32),
      coarse=coarse.astype(np.int32),
      fine=fine[:, :len(schema.fine)].astype(np.int32),
      continuous_range=np.full((c, 2), np.nan, np.float32))


def random_ground_truth(schema: Schema, num_gms: int,
                        rng: np.random.Generator) -> GroundTruth:
  """Random labels for GMs named gm_0, gm_1, ...: for benchmarks and tests.

  Draws, in order, the continuous, discrete, coarse and fine columns from
  `rng`; continuous ranges are [0, 1].
  """
  return GroundTruth(
      schema=schema, gm_names=tuple(f'gm_{i}' for i in range(num_gms)),
      continuous=rng.uniform(size=(num_gms, len(schema.continuous))).astype(
          np.float32),
      discrete=np.stack([rng.integers(0, k, num_gms)
                         for k in schema.num_classes], 1).astype(np.int32),
      coarse=rng.integers(0, 2, (num_gms, len(schema.coarse))).astype(
          np.int32),
      fine=rng.integers(0, 2, (num_gms, len(schema.fine))).astype(np.int32),
      continuous_range=np.tile([0.0, 1.0], (len(schema.continuous), 1)))
