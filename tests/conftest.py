"""Test-suite settings: strict shapes, a persistent compilation cache, few hypothesis examples."""

import os
from pathlib import Path

import hypothesis
import jax

# Silent broadcasting bugs fail loudly (after equinox).
jax.config.update("jax_numpy_rank_promotion", "raise")
# Compiled programs are reused across test sessions: most of a cold run is XLA compilation.
_cache = Path(os.environ.get("GATELAB_JAX_CACHE", Path.home() / ".cache" / "gatelab" / "jax"))
jax.config.update("jax_compilation_cache_dir", str(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

hypothesis.settings.register_profile("default", max_examples=15, deadline=None)
hypothesis.settings.register_profile("slow", max_examples=200, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
