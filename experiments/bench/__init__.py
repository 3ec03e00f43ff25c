"""gatelab's benchmark suite: ``python -m experiments.bench`` (see ``__main__.py``).

Nothing is imported here, so that ``python -m experiments.bench.torch_grid`` loads PyTorch
without JAX.
"""
