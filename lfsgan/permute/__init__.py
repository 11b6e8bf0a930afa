"""Permutation weight matching (Git Re-Basin) for the StyleGAN2 G and D, linear mode
connectivity, and the singular-vector diagnostics of Ito et al. (``docs/permutation.md``).

* :mod:`.spec` — :class:`TensorSpec` / :class:`PermutationSpec`: every state_dict key, its
  permuted axes, equalised-lr gain, partial and reshaped axes.
* :mod:`.stylegan2` — :func:`generator_spec`, :func:`discriminator_spec` (rosinality layout).
* :mod:`.apply` — :func:`apply_permutation`.
* :mod:`.matching` — :func:`match` (coordinate ascent over LAPs), :func:`match_many` (MergeMany /
  anchor).
* :mod:`.ste` — :func:`ste_search` (straight-through-estimator permutation search, Git Re-Basin
  §3.3), :func:`generator_loss` (the loss it minimises in the workflow).
* :mod:`.lmc` — :func:`interpolate`, :func:`recompute_mean_latent`, :func:`lmc_curve`, the
  mixture baseline, :func:`barrier`.
* :mod:`.diagnostics` — :func:`singular_diagnostics`, :func:`r_gamma` (Ito et al.'s R(γ)),
  :func:`plot_singular_diagnostics`.
"""

from .apply import apply_permutation
from .diagnostics import (R_NORMALISATIONS, alignment_sum, l2_totals, layer_matrices, plot_singular_diagnostics, r_gamma,
                          r_normaliser, singular_diagnostics)
from .lmc import (
    DEFAULT_LAMBDAS,
    MixtureGenerator,
    average_states,
    barrier,
    interpolate,
    lmc_curve,
    mixture_curve,
    mixture_images,
    recompute_mean_latent,
)
from .matching import MatchManyResult, MatchResult, effective_sq_distance, match, match_many, pairwise_sq_distances
from .spec import PermutationSpec, TensorSpec, check_perms, identity_perms, invert_perms, random_perms
from .ste import SteResult, generator_loss, loss_at, ste_search
from .stylegan2 import discriminator_spec, generator_spec

__all__ = [
    "TensorSpec",
    "PermutationSpec",
    "check_perms",
    "identity_perms",
    "random_perms",
    "invert_perms",
    "generator_spec",
    "discriminator_spec",
    "apply_permutation",
    "match",
    "MatchResult",
    "match_many",
    "MatchManyResult",
    "effective_sq_distance",
    "pairwise_sq_distances",
    "interpolate",
    "average_states",
    "recompute_mean_latent",
    "lmc_curve",
    "mixture_curve",
    "mixture_images",
    "MixtureGenerator",
    "barrier",
    "DEFAULT_LAMBDAS",
    "singular_diagnostics",
    "layer_matrices",
    "l2_totals",
    "plot_singular_diagnostics",
    "r_gamma",
    "alignment_sum",
    "r_normaliser",
    "R_NORMALISATIONS",
    "ste_search",
    "SteResult",
    "generator_loss",
    "loss_at",
]
