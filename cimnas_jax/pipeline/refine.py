"""Stage 2, refine: gradient refinement of the finalists (Gumbel-softmax relaxation through the
differentiable surrogates and the analytic model). Off by default (``--refine_steps=0``): the
finalists pass through unchanged, recorded as such."""
from __future__ import annotations

from cimnas_jax.pipeline.results import Finalists


def check_inputs(cfg, space) -> None:
    """Fail before the search when refinement is asked for but cannot run."""
    from cimnas_jax.pipeline.config import ConfigError
    if cfg.refine_steps > 0:
        try:
            import cimnas_jax.relax  # noqa: F401
        except ImportError:
            raise ConfigError(f"--refine_steps={cfg.refine_steps}: gradient refinement (cimnas_jax.relax) is not "
                              "available in this version; use --refine_steps=0") from None


def refine(cfg, ctx, space, finalists: Finalists, fitness, objective) -> tuple[Finalists, dict]:
    """(refined finalists, a summary for results.json). A no-op copy when refinement is off."""
    if cfg.refine_steps == 0:
        return finalists, {"enabled": False, "note": "refinement off (--refine_steps=0): finalists unchanged"}
    raise NotImplementedError("gradient refinement is not available in this version")
