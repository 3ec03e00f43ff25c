"""Text generation from a trained character-level language model (``shakespeare`` runs).

    gatelab sample runs/shakespeare/lstm/seed_0 --prompt "ROMEO:" --length 400 --temperature 0.8

Or from Python::

    import gatelab
    text = gatelab.sample("runs/shakespeare/lstm/seed_0", "ROMEO:", length=400, seed=0)

The prompt runs through the model once, keeping every layer's final carry; then generation is
one compiled ``lax.scan`` over the generated length, every step ``SequenceModel.step`` (the same
layers and parameters) and a draw from the softmax at the given temperature. The same seed gives
the same text.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp

from gatelab import restore
from gatelab.models import SequenceModel

__all__ = ["sample"]


def sample(
    directory: str | Path,
    prompt: str,
    length: int = 400,
    temperature: float = 0.8,
    seed: int = 0,
) -> str:
    """The prompt followed by ``length`` generated characters.

    Args:
        directory: a ``shakespeare`` run's workdir (or a train workdir with one run).
        prompt: the text to continue (at least one character of the vocabulary).
        length: characters to generate.
        temperature: divides the logits; 0 takes the most likely character every step.
        seed: the PRNG seed of the draws.

    Raises:
        ValueError: for a run of another task, a bidirectional model, or characters outside
            the vocabulary.
    """
    run = restore.restore_run(restore.resolve_run(directory))
    if run.task.name != "shakespeare":
        raise ValueError(
            f"gatelab sample needs a shakespeare run (a character language model); "
            f"{directory} trained task {run.task.name!r}"
        )
    if run.model.bidirectional:
        raise ValueError("a bidirectional model cannot generate text left to right")
    if length < 1 or temperature < 0:
        raise ValueError(f"need length >= 1 and temperature >= 0, got {length}, {temperature}")
    unknown = sorted(set(prompt) - set(run.task.vocab))
    if not prompt or unknown:
        raise ValueError(
            f"the prompt must be non-empty and use the vocabulary; unknown: {unknown!r}"
        )
    ids = jnp.asarray(run.task.encode(prompt), jnp.int32)[None, :]
    generated = _generate(
        run.model, run.best_params, ids, jax.random.key(seed), length, float(temperature)
    )
    return prompt + run.task.decode(list(map(int, generated)))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _generate(model, params, ids, key, length: int, temperature: float) -> jax.Array:
    """Token ids of ``length`` characters after ``ids`` (1, p)."""
    variables = {"params": params}
    logits, carries = model.apply(variables, ids, return_carries=True)

    def step(state, key):
        carries, logits = state
        token = (
            jnp.argmax(logits, axis=-1)
            if temperature == 0
            else jax.random.categorical(key, logits / temperature, axis=-1)
        )
        carries, logits = model.apply(variables, carries, token, method=SequenceModel.step)
        return (carries, logits), token[0]

    _, tokens = jax.lax.scan(step, (carries, logits[:, -1]), jax.random.split(key, length))
    return tokens
