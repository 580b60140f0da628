"""Held-out GMs: names, the paper's test sets, fractions, and folds that
never split an architecture."""

import os
import sys

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest

from configs import data as data_config
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(REPO, '..', 'shared', 'reference')


def _zoo_truth(num_gms, duplicates=()):
  """A zoo-schema table of distinct architectures, except that each
  (copy, original) pair of `duplicates` gets the original's architecture
  columns (its loss columns stay its own)."""
  gt = schema_lib.random_ground_truth(schema_lib.ZOO, num_gms,
                                      np.random.default_rng(0))
  continuous, discrete = gt.continuous.copy(), gt.discrete.copy()
  # Distinct by construction: column 0 counts the GMs.
  continuous[:, 0] = np.arange(num_gms) / num_gms
  for copy, original in duplicates:
    continuous[copy], discrete[copy] = continuous[original], discrete[original]
  return gt.__class__(**{**gt.__dict__, 'continuous': continuous,
                         'discrete': discrete})


def test_folds_never_split_an_architecture():
  # Planted: 3 GMs share gm_01's architecture, 2 share gm_07's.
  duplicates = ((4, 1), (9, 1), (13, 1), (11, 7), (17, 7))
  gt = _zoo_truth(20, duplicates)
  gms = gt.gm_names
  groups = splits.architecture_groups(gt, gms)
  assert len(set(groups.values())) == 20 - len(duplicates)
  for seed in range(6):
    folds = [splits.fold_test_gms(gms, 4, k, seed, groups) for k in range(4)]
    assert sorted(sum(folds, ())) == sorted(gms)  # A partition.
    for test in folds:
      train = set(gms) - set(test)
      assert not {groups[g] for g in test} & {groups[g] for g in train}
    # Balanced as far as the groups allow: 20 GMs, groups of 4, 3 and 1.
    assert sorted(map(len, folds)) == [5, 5, 5, 5]
  # Without groups, the planted pairs do fall on both sides of some fold.
  plain = [splits.fold_test_gms(gms, 4, k, 0) for k in range(4)]
  assert any({groups[g] for g in f} & {groups[g] for g in set(gms) - set(f)}
             for f in plain)


def test_random_picks_keep_architectures_together_through_the_config():
  gt = _zoo_truth(12, ((3, 0), (5, 0)))
  c = data_config.parsing()
  c.split_seed = 0
  for seed in range(8):
    c.split_seed = seed
    for field, value in (('test_fraction', 0.25), ('num_test_gms', 2)):
      c.num_test_gms = 0
      c[field] = value
      test = splits.choose_test_gms(c, gt.gm_names, gt.gm_names, gt)
      together = {gt.gm_names[i] for i in (0, 3, 5)}
      assert together <= test or not together & test
      assert len(test) >= (3 if field == 'test_fraction' else 2)
    c.num_folds, c.fold = 3, seed % 3
    test = splits.choose_test_gms(c, gt.gm_names, gt.gm_names, gt)
    assert together <= test or not together & test
    c.num_folds = 0


def test_default_holds_out_a_quarter_and_one_keeps_everything_out():
  gms = tuple(f'gm_{i:03d}' for i in range(400))
  c = data_config.parsing()
  assert (c.test_fraction, c.num_test_gms) == (0.25, 0)
  assert len(splits.choose_test_gms(c, gms, gms)) == 100
  c.test_fraction = 1.0
  assert splits.choose_test_gms(c, gms, gms) == set(gms)
  c.test_fraction = 0.999  # Below 1 a training GM remains.
  assert len(splits.choose_test_gms(c, gms[:10], gms[:10])) == 9
  c.test_fraction = 1.5
  with pytest.raises(ValueError, match='test_fraction is 1.5'):
    splits.choose_test_gms(c, gms, gms)


def test_test_gms_as_a_comma_list_or_a_tuple(monkeypatch):
  gms = ('gm_a', 'gm_b', 'gm_c', 'gm_d')
  # What the command line makes of each spelling (docs/evaluation.md
  # documents the first two): a comma list arrives as the one-element
  # tuple ('gm_a,gm_c',).
  for spelling in ('gm_a,gm_c', "('gm_a','gm_c')", ' gm_a , gm_c ,'):
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, '',
                                    flag_values=flag_values)
    argv = ['test', f'--config={REPO}/configs/fen.py:test',
            f'--config.data.test_gms={spelling}']
    monkeypatch.setattr(sys, 'argv', argv)  # config_flags reads it.
    flag_values(argv)
    c = flag_values.config.data
    assert splits.choose_test_gms(c, gms, gms) == {'gm_a', 'gm_c'}, spelling
  assert splits.gm_list('gm_a, gm_b') == ('gm_a', 'gm_b')
  c.test_gms = ('gm_a,gm_x',)
  with pytest.raises(ValueError, match=r"unknown GMs \['gm_x'\]"):
    splits.choose_test_gms(c, gms, gms)


def test_the_papers_four_test_sets():
  names = [n for k in (1, 2, 3, 4) for n in splits.PAPER_TEST_SETS[k]]
  assert [len(splits.PAPER_TEST_SETS[k]) for k in (1, 2, 3, 4)] == [12] * 4
  assert len(set(names)) == 48  # Disjoint.
  assert splits.PAPER_TEST_SETS[2][:3] == ('AAE', 'ADAGAN_C', 'BEGAN')
  listed = os.path.join(REFERENCE, 'red116_gm_names.txt')
  if os.path.exists(listed):  # Every name is a RED116 GM.
    with open(listed) as f:
      red116 = {line.strip() for line in f if line.strip()}
    assert len(red116) == 116 and set(names) <= red116
  red116 = sorted(set(names) | {f'OTHER_{i}' for i in range(68)})
  c = data_config.parsing()
  c.name = 'model_parsing'
  for k in (1, 2, 3, 4):
    c.test_set = k
    test = splits.choose_test_gms(c, red116, red116)
    assert test == set(splits.PAPER_TEST_SETS[k])
  c.test_set = 5
  with pytest.raises(ValueError) as error:
    splits.choose_test_gms(c, red116, red116)
  assert '\n' not in str(error.value)
  assert "test_set is 5; the paper's test sets are 1, 2, 3, 4" in str(
      error.value)
  c.test_set, c.name = 1, 'zoo'
  with pytest.raises(ValueError, match='needs config.data.name=model_parsing'):
    splits.choose_test_gms(c, red116, red116)
  c.name, c.test_gms = 'model_parsing', ('AAE',)
  with pytest.raises(ValueError, match='test_set and config.data.test_gms '
                     'both choose'):
    splits.choose_test_gms(c, red116, red116)


def test_limit_train_gms_keeps_a_seeded_subset_in_order():
  gms = tuple(f'gm_{i:03d}' for i in range(40))
  ten = splits.limit_train_gms(gms, 10, seed=0)
  assert len(ten) == 10 and set(ten) <= set(gms)
  assert list(ten) == sorted(ten, key=gms.index)
  assert ten == splits.limit_train_gms(gms, 10, seed=0)
  assert ten != splits.limit_train_gms(gms, 10, seed=1)
  assert splits.limit_train_gms(gms, 0, seed=0) == gms
  assert splits.limit_train_gms(gms, 99, seed=0) == gms
  with pytest.raises(ValueError, match='num_train_gms'):
    splits.limit_train_gms(gms, -1, seed=0)
