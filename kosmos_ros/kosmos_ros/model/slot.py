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
The engine a long-running front end holds: loaded on demand, freed on demand.

The node loads the model on activate and frees it on deactivate (unless
told to keep it); freeing drops the one reference kept here, collects, and
returns CUDA's cached blocks to the driver so other processes see the
memory. Nothing else may keep the model: the worker's reference is dropped
first, torch.compile's caches hold only weak references to it, and a test
checks that no parameter survives (test_engine, test_node). An engine
handed in (tests, an application embedding the node) is the caller's: it
is never freed.
"""

import gc
import weakref


class EngineSlot:
    """Holds at most one KosmosEngine; see the module docstring."""

    def __init__(self, engine=None):
        """Start empty, or with a caller's engine (kept for good)."""
        self._given = engine
        self.engine = engine

    def load(self, options, max_image_pixels, **kwargs):
        """Return the engine, loading it first if the slot is empty."""
        if self.engine is None:
            from .engine import KosmosEngine
            self.engine = KosmosEngine.load(options, max_image_pixels,
                                            **kwargs)
        return self.engine

    def free(self):
        """
        Drop a loaded engine (not a given one); return whether it is gone.

        Gone means no parameter of the model is reachable any more (checked
        through a weak reference after collecting): False while something
        still holds the model, e.g. a generation that has not ended yet.
        """
        if self.engine is None or self.engine is self._given:
            return False
        engine, self.engine = self.engine, None
        device = str(engine.device)
        probe = weakref.ref(next(engine.model.parameters()))
        del engine
        gc.collect()
        if device.startswith('cuda'):
            import torch
            torch.cuda.empty_cache()  # the cached blocks back to the driver
        return probe() is None
