"""ltrkit: learning to rank on PyTorch.

Data flows one way: files -> :mod:`ltrkit.data` -> batches -> :mod:`ltrkit.models` -> scores ->
:mod:`ltrkit.losses` / :mod:`ltrkit.metrics`; :mod:`ltrkit.training` drives the loop and
:mod:`ltrkit.cli` exposes it as the ``ltrkit`` command.
"""

__version__ = "0.1.0"
