"""Hypothesis settings for the fuzz tier: a few seconds per property in the
normal suite, the same examples every run, nothing written into the repository.

HYPOTHESIS_PROFILE=fuzz-long runs each property far longer, by hand
(HYPOTHESIS_EXAMPLES examples each, 20000 by default)."""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches (constants, unicode tables) in its home dir, ./.hypothesis by default: not in the repo.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "hawser-hypothesis"))

_COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The suite's profile draws the same examples every run (derandomize): a CI result
# must not depend on luck. New ground is covered by hand, with fuzz-long and `make fuzz`.
settings.register_profile("hawser-ci", max_examples=300, derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("fuzz-long", max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "20000")),
                          **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hawser-ci"))
