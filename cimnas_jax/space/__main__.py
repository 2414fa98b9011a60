"""Describe a search space and decode sampled designs.

  python -m cimnas_jax.space --space=mbv2_rram --describe
  python -m cimnas_jax.space --space=mbv2_rram --sample=3 --seed=0
"""
from __future__ import annotations

import json
import re
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """Define this command's flags (before parsing; see cimnas_jax.cli.run_command)."""
    flags.DEFINE_string("space", "mbv2_rram", "search space name")
    flags.DEFINE_bool("describe", False, "print the gene table and the space sizes")
    flags.DEFINE_integer("sample", 0, "print this many random designs, decoded, as JSON")
    flags.DEFINE_integer("seed", 0, "PRNG seed for --sample")


def describe(sp) -> str:
    lines = [f"space {sp.name}: {sp.description}", f"technology: {sp.technology}", ""]
    lines.append(f"{'#':>3}  {'gene':<20} {'group':<22} {'n':>3}  {'unit':<8} choices")
    for i, g in enumerate(sp.genes):
        ch = ", ".join(f"{c:g}" for c in g.choices)
        if len(ch) > 60:
            ch = f"{g.choices[0]:g}, {g.choices[1]:g}, …, {g.choices[-1]:g}"
        lines.append(f"{i:>3}  {g.name:<20} {g.group:<22} {len(g.choices):>3}  {g.unit:<8} {ch}")
    counts = {grp: int((sp.group_ids == k).sum()) for k, grp in enumerate(sp.group_names)}
    lines += ["", f"genes: {sp.n_genes} (" + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + ")",
              f"layers (max): {len(sp.layer_names)}",
              f"raw size (genomes, genes without effect included): {float(sp.raw_size()):.3e}",
              f"distinct canonical designs: {float(sp.canonical_size()):.3e}"]
    return "\n".join(lines)


def sample_json(sp, n: int, seed: int) -> list[dict]:
    import jax
    import numpy as np
    from cimnas_jax.workload import capacity, total_macs, total_weights

    g = sp.canonicalise(sp.sample(jax.random.key(seed), n))
    gn_idx = np.asarray(g)
    lt, hw = sp.workloads(g), sp.hardware(g)
    needed, avail = (np.asarray(x) for x in capacity(lt, hw))
    macs, weights = np.asarray(total_macs(lt)), np.asarray(total_weights(lt))
    active = np.asarray(sp.active(g))
    hashes = sp.hash_hex(g)
    out = []
    for p in range(n):
        genes = {}
        for i, gene in enumerate(sp.genes):
            if active[p, i]:
                genes[gene.name] = gene.choices[int(gn_idx[p, i])]
        out.append({
            "space": sp.name, "design_hash": hashes[p], "genome": [int(x) for x in np.asarray(g[p])],
            "genes": genes, "units": {gn.name: gn.unit for gn in sp.genes if gn.unit and active[p, sp.index[gn.name]]},
            "n_layers": int(np.asarray(lt.active[p]).sum()), "macs": int(macs[p]), "n_weights": int(weights[p]),
            "cells_needed": int(needed[p]), "cells_available": int(avail[p]), "weights_fit": bool(needed[p] <= avail[p]),
        })
    return out


def check_flags(v: dict) -> None:
    """Validate space / describe / sample / seed; raises FlagError naming the flag and what is allowed."""
    from cimnas_jax.cli import common as C
    from cimnas_jax.space import space_names
    if v["space"] not in space_names():
        raise C.FlagError(f"--space={v['space']!r} is unknown; allowed: {', '.join(space_names())}")
    C.integer(v, "sample", 0, 100000)
    C.seed(v)
    if not v["describe"] and v["sample"] == 0:
        raise C.FlagError("nothing to do: pass --describe and/or --sample=N (N >= 1)")


def main(argv):
    from cimnas_jax.cli.common import check_or_fail, fail
    from cimnas_jax.space import get_space
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    check_or_fail(check_flags, dict(space=FLAGS.space, describe=FLAGS.describe, sample=FLAGS.sample,
                                    seed=FLAGS.seed))
    sp = get_space(FLAGS.space)
    if FLAGS.describe:
        print(describe(sp))
    if FLAGS.sample:
        t = time.perf_counter()
        designs = sample_json(sp, FLAGS.sample, FLAGS.seed)
        text = json.dumps(designs, indent=1)
        # one genome per line keeps the file readable
        text = re.sub(r'"genome": \[[^\]]*\]', lambda m: re.sub(r"\s+", "", m.group(0)).replace(":", ": "), text)
        print(text)
        print(f"\n# {len(designs)} designs decoded in {time.perf_counter() - t:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(main)
