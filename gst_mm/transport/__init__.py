"""GST transport kernel, the L_BT loss and the OT baselines (pure PyTorch).

No mmengine / mmcv / mmpose imports here: the registered loss modules live in
``gst_mm.models.losses`` and call these functions.
"""
from .joint_plan import (
    COST_KEY,
    DISCREPANCIES,
    KERNEL_KEY,
    joint_transport_costs,
    joint_transport_losses,
    plan_costs,
    plan_entropies,
    transported_masses,
    weighted_joint_mean,
)
from .kernel import (
    DEFAULT_BG_RATIO,
    DEFAULT_CUTOFF,
    DEFAULT_EPS,
    DEFAULT_MAX_STD,
    TransportKernel,
    build_kernel,
    cell_centres,
    clamp_covariances,
    heuristic_kernel,
    window_radius,
)
from .losses import (
    BATCH_REDUCTIONS,
    batch_dm_count_loss,
    batch_mean,
    batch_reduce,
    batch_transport_loss,
    bayesian_loss,
    check_reduction,
    dm_count_loss,
    dm_count_terms,
    pseudo_density,
    pseudo_density_l2_loss,
    transport_loss,
    uot_loss,
)
from .ot import (
    SINKHORN_GUARD,
    UOT_MAX_LOG_RATIO,
    bayesian_posteriors,
    fast_path_eps,
    grid_ot_loss,
    grid_sinkhorn,
    pairwise_cost,
    sinkhorn,
    solve_uot_potential,
    uot_alpha,
    uot_plan,
    uot_primal_value,
    uot_semi_dual,
)
from .point_plans import (
    COST_KINDS,
    background_costs,
    entry_costs,
    point_costs,
    point_kernels,
    with_entry_costs,
)
from .soft_kernel import build_soft_kernel, soft_point_kernels

__all__ = [
    'DEFAULT_EPS', 'DEFAULT_CUTOFF', 'DEFAULT_BG_RATIO', 'DEFAULT_MAX_STD', 'TransportKernel',
    'build_kernel', 'cell_centres', 'clamp_covariances',
    'heuristic_kernel', 'point_kernels', 'point_costs', 'COST_KINDS', 'window_radius',
    'entry_costs', 'with_entry_costs', 'background_costs',
    'KERNEL_KEY', 'COST_KEY', 'DISCREPANCIES', 'joint_transport_costs',
    'joint_transport_losses', 'plan_costs', 'plan_entropies', 'transported_masses',
    'weighted_joint_mean',
    'build_soft_kernel',
    'soft_point_kernels', 'BATCH_REDUCTIONS', 'batch_mean',
    'batch_reduce', 'batch_dm_count_loss', 'check_reduction', 'dm_count_terms',
    'batch_transport_loss', 'bayesian_loss', 'dm_count_loss', 'pseudo_density',
    'pseudo_density_l2_loss', 'transport_loss', 'uot_loss', 'bayesian_posteriors',
    'fast_path_eps', 'grid_ot_loss', 'grid_sinkhorn',
    'pairwise_cost', 'sinkhorn', 'solve_uot_potential', 'uot_alpha', 'uot_plan',
    'uot_primal_value', 'uot_semi_dual', 'SINKHORN_GUARD', 'UOT_MAX_LOG_RATIO'
]
