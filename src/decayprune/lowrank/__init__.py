"""Low-rank training (LRPET) and DPM on ranks: projection, energy transfer, BN rectification, factoring.

:mod:`.svd` (the rank-r projection as a pure function), :mod:`.projection`
(:class:`LowRankProjector`: alternate SGD with projection, and the rank decay), :mod:`.factor`
(:func:`factorize`: each layer replaced by two thin layers so the MACs drop).
"""

from .factor import factorize, factorize_layer
from .projection import LowRankProjector, following_batchnorms, resolve_ranks
from .svd import as_matrix, full_rank, project

__all__ = [
    "LowRankProjector",
    "resolve_ranks",
    "following_batchnorms",
    "project",
    "as_matrix",
    "full_rank",
    "factorize",
    "factorize_layer",
]
