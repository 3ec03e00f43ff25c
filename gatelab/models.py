"""SequenceModel: input encoder -> stacked GatedRNN layers -> readout -> head.

Notation: ``b`` batch, ``t`` time, ``d`` input features, ``h`` hidden features per direction,
``f`` features after a layer (``h``, or ``2h`` bidirectional), ``o`` outputs.

One model serves every task kind: classification and regression read the sequence out (last
step, mean over valid steps, or all steps flattened as in the MNIST-1D paper's GRU baseline),
per-step prediction (copy, chorales) and language modelling apply the head at every step.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gatelab import families
from gatelab.config import Config
from gatelab.rnn import GatedRNN
from gatelab.tasks import Task

__all__ = [
    "SequenceModel",
    "build_model",
    "layer_inputs",
    "model_param_count",
    "solve_hidden",
    "param_parts",
]

Array = jax.Array


class SequenceModel(nn.Module):
    """A stack of gated RNN layers with an encoder and a head.

    Attributes:
        spec: the cell spec of every layer.
        hidden: hidden units per layer and direction.
        output_size: ``o``, the head's outputs.
        layers: stacked layers; layer ``l`` is named ``layer{l}`` (``layer{l}_reverse`` for the
            backward direction), so parameters read ``layer0/forget/kernel_h``.
        bidirectional: a forward and a backward layer at each depth, outputs concatenated.
        per_step: outputs (b, t, o) at every step instead of one (b, o) per sequence.
        readout: ``"last"`` (the final state of each direction at the sequence's last valid
            step), ``"mean"`` (over valid steps) or ``"flatten"`` (all steps, (b, t * f)).
        encoder: ``"none"`` (features go in as they are), ``"linear"`` or ``"embedding"``.
        vocab_size: the embedding's vocabulary.
        embed: the encoder's width (0: ``hidden``).
        unroll: time steps per scan iteration.
        backward: ``GatedRNN``'s backward pass, ``"autodiff"`` or ``"fused"``.
    """

    spec: families.Spec
    hidden: int
    output_size: int
    layers: int = 1
    bidirectional: bool = False
    per_step: bool = False
    readout: str = "last"
    encoder: str = "none"
    vocab_size: int = 0
    embed: int = 0
    unroll: int = 1
    backward: str = "autodiff"

    @nn.compact
    def __call__(
        self,
        inputs: Array,
        lengths: Array | None = None,
        probes: dict | None = None,
        *,
        carries: dict | None = None,
        return_carries: bool = False,
        deterministic: bool = True,
    ):
        """Maps inputs (b, t, d) floats or (b, t) token ids to (b, o) or (b, t, o) outputs.

        Args:
            inputs: (b, t, d) floats or (b, t) token ids.
            lengths: optional (b,) valid steps per sequence.
            probes: layer names (``layer0``, ``layer0_reverse``, ...) to (b, t, H) arrays added
                to that layer's hidden states (``GatedRNN``'s ``probe``).
            carries: layer names to the carries to start from (default zeros).
            return_carries: also return every layer's final carry.
            deterministic: evaluation; ``False`` trains the spec's regularisers with masks
                from the ``"dropout"`` stream (``GatedRNN``).

        Returns:
            The outputs, or ``(outputs, carries)`` with ``return_carries``.
        """
        probes = probes or {}
        carries = carries or {}
        final_carries = {}
        width = self.embed or self.hidden
        match self.encoder:
            case "embedding":
                x = nn.Embed(self.vocab_size, width, name="encoder")(inputs)
            case "linear":
                x = nn.Dense(width, name="encoder")(inputs)
            case _:
                x = inputs
        for layer in range(self.layers):
            names = [f"layer{layer}"] + ([f"layer{layer}_reverse"] if self.bidirectional else [])
            finals, ys = [], []
            for name in names:
                rnn = GatedRNN(
                    self.hidden,
                    self.spec,
                    reverse=name.endswith("_reverse"),
                    unroll=self.unroll,
                    backward=self.backward,
                    name=name,
                )
                carry, y = rnn(
                    x,
                    initial_carry=carries.get(name),
                    seq_lengths=lengths,
                    probe=probes.get(name),
                    deterministic=deterministic,
                )
                finals.append(carry)
                final_carries[name] = carry
                ys.append(y)
            x = ys[0] if len(ys) == 1 else jnp.concatenate(ys, axis=-1)
        if self.per_step:
            outputs = nn.Dense(self.output_size, name="head")(x)
            return (outputs, final_carries) if return_carries else outputs
        match self.readout:
            case "last":
                # The hidden state of each direction after its last valid step.
                hidden = families.family(self.spec).hidden
                features = jnp.concatenate([hidden(c) for c in finals], axis=-1)
            case "mean":
                if lengths is None:
                    features = jnp.mean(x, axis=1)
                else:
                    valid = jnp.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
                    total = jnp.sum(jnp.where(valid, x, 0.0), axis=1)
                    features = total / jnp.maximum(lengths, 1)[:, None].astype(x.dtype)
            case "flatten":
                features = x.reshape(x.shape[0], -1)
            case _:
                raise ValueError(f"readout={self.readout!r}; allowed: last, mean, flatten")
        outputs = nn.Dense(self.output_size, name="head")(features)
        return (outputs, final_carries) if return_carries else outputs

    @nn.nowrap
    def constrain(self, params: dict) -> dict:
        """Every layer's parameters after the family's projection (``families.constrain``:
        IndRNN's bound on its recurrent weights); the same tree for families without one."""
        return {
            name: families.constrain(self.spec, value) if name.startswith("layer") else value
            for name, value in params.items()
        }

    def step(self, carries: dict, inputs: Array) -> tuple[dict, Array]:
        """One time step of a per-step model (a language model generating text).

        Args:
            carries: every layer's carry (``return_carries`` of a call on the prompt).
            inputs: (b,) token ids or (b, d) features of the step.

        Returns:
            ``(carries, outputs)`` with ``outputs`` (b, o).
        """
        if self.bidirectional or not self.per_step:
            raise ValueError("a step needs a unidirectional model with outputs at every step")
        outputs, carries = self(inputs[:, None], carries=carries, return_carries=True)
        return carries, outputs[:, 0]


def _encoder(config: Config, task: Task) -> str:
    if config.model.encoder != "auto":
        return config.model.encoder
    return "embedding" if task.input_kind == "tokens" else "none"


def build_model(config: Config, task: Task, hidden: int | None = None) -> SequenceModel:
    """The model of ``config`` for ``task`` (``hidden`` overrides, e.g. from ``solve_hidden``)."""
    encoder = _encoder(config, task)
    if encoder == "none" and task.input_kind == "tokens":
        raise ValueError(
            f"model.encoder=none cannot take token ids ({task.name}); use embedding or auto"
        )
    if encoder == "linear" and task.input_kind == "tokens":
        raise ValueError(f"model.encoder=linear cannot take token ids ({task.name})")
    if encoder == "embedding" and task.input_kind != "tokens":
        raise ValueError(f"model.encoder=embedding needs token inputs; {task.name} has reals")
    family = families.family(config.spec)
    if config.model.backward == "fused" and not family.fused_backward:
        raise ValueError(
            f"model.backward=fused: the hand-written backward needs one dense recurrent kernel, "
            f"which {type(config.spec).__name__} has not; allowed: autodiff"
        )
    model = SequenceModel(
        spec=config.spec,
        hidden=hidden or config.model.hidden,
        output_size=task.output_size,
        layers=config.model.layers,
        bidirectional=config.model.bidirectional,
        per_step=task.target_kind in ("step_class", "step_binary"),
        readout=config.model.readout,
        encoder=encoder,
        vocab_size=task.input_size if encoder == "embedding" else 0,
        embed=config.model.embed,
        unroll=config.model.unroll,
        backward=config.model.backward,
    )
    for layer, features in enumerate(layer_inputs(model, task.input_size)):
        try:  # sizes a spec cannot take: before any parameter exists
            families.check_sizes(model.spec, features, model.hidden)
        except ValueError as error:
            raise ValueError(f"model.spec (layer {layer}, input {features}): {error}") from None
    return model


def layer_inputs(model: SequenceModel, input_size: int) -> list[int]:
    """The input width of every recurrent layer (of each direction): the encoder's output (or
    the task's ``input_size`` without one), then the layer below's, both directions side by
    side."""
    directions = 2 if model.bidirectional else 1
    first = input_size if model.encoder == "none" else model.embed or model.hidden
    width = families.output_features(model.spec, model.hidden)
    return [first] + [directions * width] * (model.layers - 1)


def model_param_count(model: SequenceModel, input_size: int, seq_len: int) -> int:
    """The model's parameter count in closed form (``families.param_count`` per layer)."""
    directions = 2 if model.bidirectional else 1
    width = model.embed or model.hidden
    match model.encoder:
        case "embedding":
            total = model.vocab_size * width
        case "linear":
            total = input_size * width + width
        case _:
            total = 0
    for features in layer_inputs(model, input_size):
        total += directions * families.param_count(model.spec, features, model.hidden)
    features = directions * families.output_features(model.spec, model.hidden)
    if not model.per_step and model.readout == "flatten":
        features *= seq_len
    return total + features * model.output_size + model.output_size


def solve_hidden(config: Config, task: Task) -> int:
    """The hidden size whose model has the parameter count closest to ``model.match_params``'s.

    The target is the count of the same model with the variant ``model.match_params`` at
    ``model.hidden``; the result is searched over the sizes 1..4 * hidden that the spec can take
    (ties go to the larger size).
    """
    reference_config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, variant=config.model.match_params, spec={})
    )
    target = model_param_count(build_model(reference_config, task), task.input_size, task.seq_len)
    best = None
    for hidden in range(1, 4 * config.model.hidden + 1):
        try:
            model = build_model(config, task, hidden)
        except ValueError:  # a size the spec cannot take (heads that do not divide it, ...)
            continue
        count = model_param_count(model, task.input_size, task.seq_len)
        gap = abs(count - target)
        if best is None or gap <= best[0]:
            best = (gap, hidden)
    return best[1]


def param_parts(params) -> dict[str, int]:
    """Parameter counts per part summed over layers: ``forget``, ``candidate``, ``head``, ...

    Args:
        params: the model's parameters, or a tree of their shapes (tuples).
    """

    def size(tree) -> int:
        is_shape = lambda x: isinstance(x, tuple) and all(isinstance(d, int) for d in x)  # noqa: E731
        leaves = jax.tree_util.tree_leaves(tree, is_leaf=is_shape)
        return int(sum(math.prod(x if is_shape(x) else x.shape) for x in leaves))

    parts: dict[str, int] = {}
    for name, subtree in params.items():
        if name.startswith("layer"):
            for part, leaves in subtree.items():
                parts[part] = parts.get(part, 0) + size(leaves)
        else:
            parts[name] = size(subtree)
    return parts
