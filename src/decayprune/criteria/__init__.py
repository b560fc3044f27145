"""Importance criteria over structures: a registry of scoring functions (see :mod:`.base`).

=============  ======================================================  =========
name           score (low = pruned first)                             needs
=============  ======================================================  =========
group_norm     squared L2 over all coupled slices (DepGraph)           weights
l1_filter      sum of |w| of the producing filters (Li et al. 2017)    weights
l2_filter      L2 norm of the producing filters (Li et al. 2017)       weights
random         seeded uniform random (the control)                     weights
bn_scale       |gamma| of the channel's BN (Network Slimming)          weights
bn_statistics  E[ReLU(BN output)] from gamma, beta, running var        weights
taylor         (sum g*w)^2 over the group; order 2 adds w'Hw/2;        grads
               form='bn': BN gate (gamma g_gamma + beta g_beta)^2
taylor_act...  |activation x gradient| per channel (Molchanov 2017)    grads
hrank          mean matrix rank of the channel's feature maps          data
chip           nuclear-norm drop without the channel (CHIP)            data
thinet         greedy next-layer reconstruction order (ThiNet)         data
snip           sum |g*w| over the group's slices (SNIP, per group)     grads
nisp           FRL Inf-FS importance propagated by |W|^T (NISP)        data
sosp_h         |theta_s.g + theta_s.(H theta)/2|, one HVP (SOSP-H)    hvp
=============  ======================================================  =========
"""

from .base import Criterion, Need, create_criterion, criterion_class, list_criteria, register_criterion
from .bn import BNScale, BNStatistics, expected_activation
from .catalog import criteria_table
from .distributed import all_reduce_mean
from .feature_maps import ChannelIndependence, FeatureMapRank, channel_independence, feature_map_ranks
from .hessian import spectral_penalty_grads, top_eigenvalue
from .magnitude import GroupMagnitude, L1FilterNorm, L2FilterNorm, group_magnitude
from .nisp import NISP, inf_fs_scores, nisp_propagate
from .passes import backward_passes, capture_outputs, forward_passes
from .random import RandomScores
from .reduce import (
    activation_sites,
    is_weight_of,
    layer_normalize,
    module_of,
    norm_layer_slices,
    normalize_per_layer,
    structure_dot,
    sum_over_slices,
)
from .redundancy import caps_from_gradient_rank, effective_rank
from .snip import Snip, structure_abs_sum
from .sosp import SOSPH, bottleneck_layers, sosp_terms
from .taylor import Taylor, TaylorActivation
from .thinet import ThiNet, greedy_removal_order, thinet_reconstruct
from .view import ScoringView

__all__ = [
    "group_magnitude",
    "BNScale",
    "BNStatistics",
    "ChannelIndependence",
    "Criterion",
    "FeatureMapRank",
    "GroupMagnitude",
    "L1FilterNorm",
    "L2FilterNorm",
    "Need",
    "RandomScores",
    "NISP",
    "SOSPH",
    "Snip",
    "bottleneck_layers",
    "caps_from_gradient_rank",
    "effective_rank",
    "inf_fs_scores",
    "nisp_propagate",
    "sosp_terms",
    "spectral_penalty_grads",
    "top_eigenvalue",
    "all_reduce_mean",
    "backward_passes",
    "capture_outputs",
    "channel_independence",
    "create_criterion",
    "criterion_class",
    "forward_passes",
    "greedy_removal_order",
    "is_weight_of",
    "layer_normalize",
    "list_criteria",
    "module_of",
    "ScoringView",
    "activation_sites",
    "register_criterion",
    "structure_abs_sum",
    "sum_over_slices",
    "Taylor",
    "TaylorActivation",
    "ThiNet",
    "thinet_reconstruct",
    "criteria_table",
    "expected_activation",
    "feature_map_ranks",
    "norm_layer_slices",
    "normalize_per_layer",
    "structure_dot",
]
