"""README.md and docs/*.md: every relative link and anchor resolves.

Pages move and headings get renamed; a broken link is found here, not by a
reader. Anchors follow GitHub's heading slugs. README stays a front door:
at most 180 lines, opening with the two commands.
"""

import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def prose(path: pathlib.Path) -> str:
  """The page without fenced blocks and with code spans blanked out."""
  lines, fenced = [], False
  for line in path.read_text(encoding='utf-8').split('\n'):
    if line.lstrip().startswith('```'):
      fenced = not fenced
      line = ''
    lines.append('' if fenced else line)
  # Same length, newlines kept: a link around a code span still matches.
  return re.sub(r'`[^`]*`', lambda m: re.sub(r'[^\n]', 'x', m.group()),
                '\n'.join(lines))


def slug(heading: str) -> str:
  """GitHub's anchor for a heading's text."""
  text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading).strip().lower()
  return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(path: pathlib.Path) -> set:
  # Headings are read from the raw text (code spans kept) but outside fences.
  found, seen, fenced = set(), {}, False
  for line in path.read_text(encoding='utf-8').split('\n'):
    if line.lstrip().startswith('```'):
      fenced = not fenced
    m = None if fenced else re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
    if m:
      base = slug(m.group(1))
      n = seen.get(base, 0)
      seen[base] = n + 1
      found.add(base if n == 0 else f'{base}-{n}')
  return found


def broken_links(page: pathlib.Path) -> list:
  problems = []
  for target in LINK.findall(prose(page)):
    if re.match(r'[a-z]+:', target):  # http(s), mailto: not checked here.
      continue
    path, _, anchor = target.partition('#')
    dest = (page.parent / path).resolve() if path else page
    if not dest.is_relative_to(REPO) or not dest.exists():
      problems.append(f'{target}: no such file in the repository')
    elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
      problems.append(f'{target}: no heading with that anchor')
  return problems


@pytest.mark.parametrize('page', PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
  assert broken_links(page) == []


def test_the_checker_catches_broken_links(tmp_path, monkeypatch):
  monkeypatch.setattr(sys.modules[__name__], 'REPO', tmp_path)
  (tmp_path / 'b.md').write_text('# A `b` heading\n\n## Twice\n## Twice\n')
  page = tmp_path / 'a.md'
  page.write_text('[ok](b.md#a-b-heading) [ok](b.md#twice-1) `[code](x.md)`\n'
                  '[gone](c.md) [bad](b.md#nope) [out](../x.md)\n'
                  '```\n[fenced](d.md)\n```\n')
  assert [p.split(':')[0] for p in broken_links(page)] == [
      'c.md', 'b.md#nope', '../x.md']


def test_readme_is_a_front_door():
  lines = (REPO / 'README.md').read_text(encoding='utf-8').split('\n')
  assert len(lines) - (lines[-1] == '') <= 180
  assert [l for l in lines if l.startswith('## ')][0] == '## Two commands'
