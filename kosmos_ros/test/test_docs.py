# Copyright 2026 The kosmos_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
The README is the front page; the guides in kosmos_ros/doc/ hold the rest.

Every relative link of the README and the guides points at a file that
exists and, with a #fragment, at a heading that file has; every guide is
reachable from the README; the parameter reference is generated.
"""

import functools
import importlib.util
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'kosmos_ros' / 'doc'  # the package's: what rosdoc2 builds
PAGES = [ROOT / 'README.md'] + sorted(DOC.glob('*.md'))
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')


def outside_code(text):
    """Return ``text`` without its fenced code blocks and inline code."""
    text = re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)
    return re.sub(r'`[^`\n]*`', '', text)


@functools.lru_cache(maxsize=None)  # each page is linked to many times
def anchors(path):
    """Return the GitHub heading anchors of a Markdown file."""
    found = set()
    for line in outside_code(path.read_text()).splitlines():
        match = re.match(r'^#{1,6} (.*)', line)
        if match:
            heading = match.group(1).strip().lower()
            found.add(re.sub(r'[^\w\- ]', '', heading).replace(' ', '-'))
    return found


def links(path):
    """Return each link target of a Markdown page, outside code."""
    text = outside_code(path.read_text())
    return [a or b for a, b in LINK.findall(text)]


def broken(path):
    """Return the relative links of ``path`` missing a file or heading."""
    bad = []
    for target in links(path):
        if re.match(r'^[a-z]+:', target):  # https:, mailto:
            continue
        name, _, fragment = target.partition('#')
        goal = (path.parent / name).resolve() if name else path
        if not goal.exists():
            bad.append('%s: %s (no such file)' % (path.name, target))
        elif fragment and goal.suffix == '.md' and \
                fragment not in anchors(goal):
            bad.append('%s: %s (no such heading)' % (path.name, target))
    return bad


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_every_link_points_at_a_file_and_heading_that_exist(page):
    assert broken(page) == []


def test_a_broken_link_is_caught(tmp_path):
    page = tmp_path / 'page.md'
    (tmp_path / 'other.md').write_text('# Other\n\n## The part\n')
    page.write_text('[a](other.md#the-part) [b](other.md#gone) [c](no.md)\n'
                    '```\n[d](in-code.md)\n```\n')
    assert broken(page) == ['page.md: other.md#gone (no such heading)',
                            'page.md: no.md (no such file)']


def test_the_readme_is_a_front_page_that_reaches_every_guide():
    readme = ROOT / 'README.md'
    assert len(readme.read_text().splitlines()) <= 300
    linked = {(ROOT / t.partition('#')[0]).resolve()
              for t in links(readme) if t.startswith('kosmos_ros/doc/')}
    assert set(PAGES[1:]) <= linked


def test_the_parameter_reference_is_made_from_the_parameter_table():
    spec = importlib.util.spec_from_file_location(
        'parameters_doc', ROOT / 'tools' / 'parameters_doc.py')
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    assert (DOC / 'parameters.md').read_text() == doc.render()
