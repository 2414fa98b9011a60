"""The "Refinement" section of the main job's report.md, from the refine stage's summary
(``pipeline.refine``): settings, cost and, per refined finalist, start vs refined exact objective."""
from __future__ import annotations

from cimnas_jax.report.tables import fmt, markdown_table


def section(summary: dict | None, search_model: str) -> list[str]:
    """Markdown lines (heading first); ``search_model`` names the fitness that scored the objective."""
    lines = ["## Refinement", ""]
    if not summary:
        return lines + ["Refinement stage not run for these finalists.", ""]
    if not summary.get("enabled"):
        return lines + [f"Off: {summary.get('note', 'finalists unchanged')}.", ""]
    c = summary["config"]
    rate = summary.get("candidate_steps_per_second")
    steady = (summary.get("relax_timing_s") or {}).get("steady_candidate_steps_per_s")
    rows = summary["per_finalist"]
    lines += [f"Gumbel-softmax refinement (cimnas_jax.relax; relaxed {summary['hw_source']} hardware, "
              f"{summary['accuracy_source']} accuracy) of {summary['starts']} finalist(s) as "
              f"{summary['candidates']} candidates: {summary['gradient_steps']} Adam steps, lr {c['lr']:g}, "
              f"tau {c['tau_start']:g} -> {c['tau_end']:g} ({c['tau_schedule']}), seed {summary['seed']}; "
              f"{summary['exact_evaluations']} exact evaluations, {summary['seconds']:.1f} s"
              + (f" ({rate:.3g} candidate-steps/s with compilation" if rate else "")
              + (f", {steady:.3g} once compiled" if rate and steady else "") + (")" if rate else "") + ".",
              "",
              f"Objective {summary['objective']}, exact: the search's own fitness ({search_model}); a refined "
              "design replaces its start only if strictly better. **Improved: "
              f"{summary['improved']} of {len(rows)}.**", ""]
    lines += markdown_table(
        ["start design", "start hash", f"start {summary['objective']}", f"best refined {summary['objective']}",
         "gain [start / chosen ×]", "chosen", "why"],
        [[r["design"], r["start_hash"][:12], fmt(r["start_objective"], ".4e"), fmt(r["refined_objective"], ".4e"),
          fmt(r["gain_x"], ".4f"), r["chosen_design"], r["note"]] for r in rows])
    return lines + [""]
