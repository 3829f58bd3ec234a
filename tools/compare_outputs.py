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
Compare the CLI outputs of two tools/matrix.sh legs.

``compare_outputs.py A.json B.json [--exact]``: the files hold the JSON
documents the CLI printed, one after another. Captions, phrases, spans and
boxes must be equal; box scores equal too with ``--exact``, else within
``TOLERANCE`` (relative), since two builds of torch or two attention kernels
round differently. Prints one line and exits 1 when the outputs differ.
"""

import json
import math
import sys

TOLERANCE = 1e-3


def documents(path):
    """Return every JSON document in the file, in order."""
    text, decoder, found, index = open(path).read(), json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        found.append(value)
    return found


def differences(a, b, path='', scores=None):
    """Yield where ``a`` and ``b`` differ; collect score pairs in ``scores``."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            yield '%s: keys %s vs %s' % (path, sorted(a), sorted(b))
            return
        for key in a:
            if key == 'score' and scores is not None:
                scores.append((a[key], b[key]))
            else:
                yield from differences(a[key], b[key], path + '.' + key,
                                       scores)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield '%s: %d vs %d items' % (path, len(a), len(b))
            return
        for index, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, '%s[%d]' % (path, index), scores)
    elif a != b:
        yield '%s: %r vs %r' % (path, a, b)


def main(argv):
    exact = '--exact' in argv
    first, second = [arg for arg in argv if arg != '--exact']
    scores = []
    found = list(differences(documents(first), documents(second),
                             scores=None if exact else scores))
    worst = max((abs(x - y) / max(abs(x), abs(y), 1e-12)
                 for x, y in scores), default=0.0)
    if found:
        print('different: %s' % found[0])
        return 1
    if worst > TOLERANCE or math.isnan(worst):
        print('scores differ by %.2g (relative), above %g' % (worst, TOLERANCE))
        return 1
    print('identical' if worst == 0 else
          'same text and boxes, scores within %.1g (relative)' % worst)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
