"""Declarative search spaces: named categorical genes and pure functions over genome batches.

A genome is an int32 vector of choice indices, one per gene; a population is ``[P, G]``.
Every function that takes genomes is pure and jit/vmap-able; host-side checks (``check``)
raise errors that name the offending gene.

Two decoding paths lead to the hardware model and the surrogates:

* genome path (integers): ``workloads(genomes)``, ``hardware(genomes)``, ``active``,
  ``canonicalise``, ``hash``, ``architecture`` -- these cast to int32, so a gradient with respect
  to their input is zero by construction;
* value path (floats, differentiable): ``values(genomes)`` or any relaxed ``[P, G]`` float array
  of per-gene physical values (e.g. a softmax-weighted mean of each gene's choices), plus block
  activities (``block_active_from_probs``: probabilities from the depth genes' choice
  distributions) -> ``workloads_from_values`` / ``hardware_from_values``. The genome path is the
  value path evaluated at one-hot choices.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

GROUPS = (
    "software",
    "quantization",
    "hardware-device",
    "hardware-circuit",
    "hardware-architecture",
)


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Elastic depth: block ``b`` is present iff the value of gene ``depth_gene[b]`` is greater
    than ``position[b]`` (its index within its stage). ``depth_gene`` holds gene indices."""

    depth_gene: tuple
    position: tuple

    @property
    def n_blocks(self) -> int:
        return len(self.position)


@dataclasses.dataclass(frozen=True)
class Gene:
    """One categorical gene.

    Attributes:
      name: unique identifier; carries its unit where it has one (``voltage_v``, ``glb_mb``).
      group: one of ``GROUPS``.
      choices: the physical values, in index order.
      unit: unit of the values ("" for counts and plain numbers).
      structural: True for genes that decide whether other genes have an effect (depths).
      doc: one line for people.
    """

    name: str
    group: str
    choices: tuple
    unit: str = ""
    structural: bool = False
    doc: str = ""


def _validate_genes(genes: Sequence[Gene]) -> None:
    seen = set()
    for i, g in enumerate(genes):
        if not isinstance(g, Gene):
            raise ValueError(f"gene #{i}: expected a Gene, got {type(g).__name__}")
        if not g.name or not isinstance(g.name, str):
            raise ValueError(f"gene #{i}: name must be a non-empty string, got {g.name!r}")
        if g.name in seen:
            raise ValueError(f"gene '{g.name}': duplicate gene name")
        seen.add(g.name)
        if g.group not in GROUPS:
            raise ValueError(f"gene '{g.name}': group {g.group!r} is not one of {list(GROUPS)}")
        if len(g.choices) == 0:
            raise ValueError(f"gene '{g.name}': choices must not be empty")
        for c in g.choices:
            if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
                raise ValueError(f"gene '{g.name}': choice {c!r} is not a finite number")
        if len(set(g.choices)) != len(g.choices):
            raise ValueError(f"gene '{g.name}': choices {g.choices} contain duplicates")


def _fmix32(x):
    """murmur3 finaliser on uint32: a cheap, well-mixing bijection."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    x = x ^ (x >> 16)
    return x


class Space:
    """A joint software/quantization/hardware search space.

    A space file builds one with its genes and pure functions:

    * ``active_fn(sp, genomes)``: which genes have an effect, bool ``[P, G]``;
    * ``workloads_fn(sp, values, block_active)``: the layer table from float32 per-gene values
      ``[P, G]`` and block activity ``[P, B]`` (bool, or probabilities on the relaxed path:
      written with arithmetic, so a probability flows through as a layer's activity);
    * ``hardware_fn(sp, values)``: hardware parameters from the values;
    * ``architecture_fn(sp, genomes)`` (optional): arrays the space's supernet needs.

    and what is specific to the space: ``blocks`` (elastic depth, see ``Blocks``), the default
    ``technology`` (a file under ``cimnas_jax/hw/tech``; a run's configuration may override it),
    ``reference`` (physical values by gene name, or a function of the space returning them: the
    baseline design a report compares against; genes not named take index 0, a callable may set
    every gene), ``reference_doc`` (one line describing it) and ``supernet`` (the name of the
    shipped supernet asset that measures its accuracy, or None). The space is hashable by
    identity so it can be a static jit argument.
    """

    def __init__(
        self,
        name: str,
        genes: Sequence[Gene],
        *,
        technology: str,
        active_fn: Callable[["Space", jax.Array], jax.Array],
        workloads_fn: Callable[["Space", jax.Array, jax.Array], Any],
        hardware_fn: Callable[["Space", jax.Array], Any],
        architecture_fn: Callable[["Space", jax.Array], Mapping[str, jax.Array]] | None = None,
        blocks: Blocks | None = None,
        layer_names: Sequence[str] = (),
        description: str = "",
        notes: Mapping[str, Any] | None = None,
        reference: Mapping[str, float] | Callable[["Space"], Mapping[str, float]] | None = None,
        reference_doc: str = "",
        supernet: str | None = None,
    ):
        _validate_genes(genes)
        self.name = name
        self.genes = tuple(genes)
        self.technology = technology
        self.blocks = blocks or Blocks((), ())
        self.reference_doc = reference_doc
        self.supernet = supernet
        self._reference = reference
        self.description = description
        self.notes = dict(notes or {})
        self.layer_names = tuple(layer_names)
        self._active_fn = active_fn
        self._workloads_fn = workloads_fn
        self._hardware_fn = hardware_fn
        self._architecture_fn = architecture_fn
        self.gene_names = tuple(g.name for g in self.genes)
        self.index = {n: i for i, n in enumerate(self.gene_names)}
        self.n_genes = len(self.genes)
        self.n_choices = np.array([len(g.choices) for g in self.genes], np.int32)
        self.group_names = GROUPS
        self.group_ids = np.array([GROUPS.index(g.group) for g in self.genes], np.int32)
        width = int(self.n_choices.max())
        table = np.zeros((self.n_genes, width), np.float32)
        for i, g in enumerate(self.genes):
            table[i, : len(g.choices)] = g.choices
            table[i, len(g.choices):] = g.choices[-1]
        self.value_table = table
        # Most genes are affine in their index (bits 4, 6, 8; kernels 3, 5, 7; channels in steps
        # of 8): decode those with one multiply-add and gather only the few others, which keeps
        # decoding a [100 000, 141] batch memory-bound rather than gather-bound on a CPU.
        offset, slope, affine = np.zeros(self.n_genes, np.float32), np.zeros(self.n_genes, np.float32), []
        for i, g in enumerate(self.genes):
            c = np.asarray(g.choices, np.float64)
            b = (c[-1] - c[0]) / max(len(c) - 1, 1)
            ok = np.allclose(c, c[0] + b * np.arange(len(c)), rtol=0, atol=1e-9)
            offset[i], slope[i] = c[0], b if ok else 0.0
            affine.append(ok)
        self._offset, self._slope = offset, slope
        self._gathered = np.flatnonzero(~np.asarray(affine, bool))
        self._salt = np.uint32(zlib.crc32(name.encode()))
        bg = np.asarray(self.blocks.depth_gene, np.int64)
        self._block_gene = bg
        self._block_pos = np.asarray(self.blocks.position, np.float32)
        # [B, W]: choice c of block b's depth gene keeps the block (padding columns repeat the
        # last choice; relaxed probabilities are zero there)
        self._block_keeps = (table[bg] > self._block_pos[:, None]).astype(np.float32) if len(bg) else \
            np.zeros((0, width), np.float32)
        self._workloads_fn = workloads_fn
        self._hardware_fn = hardware_fn
        # Jitted decoders: eager (op-by-op) calls of these take seconds; inside a caller's jit
        # they inline, so wrapping costs nothing there.
        self._jit_workloads = jax.jit(lambda g: self._workloads_of(g))
        self._jit_hardware = jax.jit(lambda g: hardware_fn(self, self.values(g)))
        self._jit_active = jax.jit(lambda g: active_fn(self, g))
        self._jit_architecture = jax.jit(lambda g: architecture_fn(self, g)) if architecture_fn else None

    def __repr__(self) -> str:
        return f"Space({self.name!r}, genes={self.n_genes}, technology={self.technology!r})"

    # ----------------------------------------------------------------- pure, jittable
    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """Uniform random genomes, int32 ``[n, G]``."""
        u = jax.random.uniform(key, (n, self.n_genes))
        return jnp.minimum(
            (u * self.n_choices).astype(jnp.int32), jnp.asarray(self.n_choices - 1)
        )

    def sample_mixed(self, key: jax.Array, n: int, concentration: float = 0.5) -> jax.Array:
        """Random genomes that reach the corners of the space, int32 ``[n, G]``.

        Each design draws, for every gene kind (the name without its ``_b01``/``_s1`` suffix,
        e.g. ``kernel``, ``pw_a_bits``), one choice distribution from a symmetric
        Dirichlet(``concentration``) and samples every gene of that kind from it. Designs so
        range from uniform mixtures to "all 3×3 kernels" or "all 4-bit activations", which
        uniform sampling almost never produces and a search's finalists often are."""
        kinds: dict = {}
        for i, g in enumerate(self.genes):
            kinds.setdefault((g.name.rsplit("_", 1)[0] if g.name[-1].isdigit() else g.name,
                              len(g.choices)), []).append(i)
        out = jnp.zeros((n, self.n_genes), jnp.int32)
        for j, ((_, c), idx) in enumerate(sorted(kinds.items())):
            kp, kg = jax.random.split(jax.random.fold_in(key, j))
            p = jax.random.dirichlet(kp, jnp.full((c,), concentration), (n,))          # [n, c]
            logits = jnp.log(jnp.maximum(p, 1e-30))[:, None, :]
            draw = jax.random.categorical(kg, logits, shape=(n, len(idx)))
            out = out.at[:, jnp.asarray(idx)].set(draw.astype(jnp.int32))
        return out

    def values(self, genomes: jax.Array) -> jax.Array:
        """Physical value of every gene, float32 ``[P, G]`` (indices clipped into range; casts
        to int32, so it is the entry of the value path, not differentiable itself)."""
        g = jnp.clip(jnp.asarray(genomes, jnp.int32), 0, jnp.asarray(self.n_choices - 1))
        v = jnp.asarray(self._offset) + jnp.asarray(self._slope) * g.astype(jnp.float32)
        if len(self._gathered):
            k = self._gathered
            cols = [jnp.asarray(self.value_table[i])[g[..., i]] for i in k]
            v = v.at[..., k].set(jnp.stack(cols, axis=-1))
        return v

    def values_at(self, genomes: jax.Array, columns) -> jax.Array:
        """Physical values of the genes at static ``columns`` only, float32 ``[P, len(columns)]``
        (cheaper than ``values(...)[:, columns]`` inside hot loops such as ``hash``)."""
        cols = np.asarray(columns, np.int64)
        g = jnp.clip(jnp.asarray(genomes, jnp.int32)[..., cols], 0, jnp.asarray(self.n_choices[cols] - 1))
        if not np.isin(cols, self._gathered).any():
            return jnp.asarray(self._offset[cols]) + jnp.asarray(self._slope[cols]) * g.astype(jnp.float32)
        return jnp.stack([jnp.asarray(self.value_table[c])[g[..., j]] for j, c in enumerate(cols)], axis=-1)

    def decode(self, genomes: jax.Array) -> dict[str, jax.Array]:
        """Physical values by gene name, each float32 ``[P]``."""
        v = self.values(jnp.atleast_2d(genomes))
        return {n: v[:, i] for i, n in enumerate(self.gene_names)}

    def value(self, genomes: jax.Array, name: str) -> jax.Array:
        """Physical value of one gene, float32 ``[P]``."""
        i = self.index[name]
        g = jnp.clip(genomes[..., i], 0, self.n_choices[i] - 1)
        return jnp.asarray(self.value_table[i])[g]

    def block_active(self, genomes: jax.Array) -> jax.Array:
        """bool ``[P, B]``: which elastic blocks the design has (genome path)."""
        g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
        return self.values_at(g, self._block_gene) > jnp.asarray(self._block_pos)

    def block_active_from_probs(self, probs: jax.Array) -> jax.Array:
        """float ``[P, B]``: probability that each block is present, from per-gene choice
        probabilities ``probs [P, G, W]`` (W = widest gene; only the depth genes are read).
        Linear in ``probs``, so exact for one-hot inputs and differentiable for relaxed ones."""
        p = jnp.asarray(probs)[:, self._block_gene, :]                        # [P, B, W]
        return jnp.sum(p * jnp.asarray(self._block_keeps), axis=-1)

    def workloads_from_values(self, values: jax.Array, block_active: jax.Array):
        """Layer table ``[P, L]`` from per-gene values ``float32 [P, G]`` and block activity
        ``[P, B]`` (bool, or float probabilities: the table's ``active`` is then a float layer
        activity in [0, 1]). Differentiable in ``values`` and float ``block_active``."""
        return self._workloads_fn(self, jnp.atleast_2d(values), block_active)

    def hardware_from_values(self, values: jax.Array):
        """Hardware parameters ``[P]`` from per-gene values ``float32 [P, G]`` (differentiable)."""
        return self._hardware_fn(self, jnp.atleast_2d(values))

    def _workloads_of(self, g):
        return self._workloads_fn(self, self.values(g), self.block_active(g))

    def reference_values(self) -> dict:
        """Physical values of the space's reference (baseline) design, by gene name."""
        if self._reference is None:
            raise ValueError(f"space {self.name!r} defines no reference design")
        ref = self._reference(self) if callable(self._reference) else self._reference
        return dict(ref)

    def reference_genome(self) -> np.ndarray:
        """Canonical genome (int32 ``[G]``) of the reference design."""
        g = self.encode(self.reference_values())
        return np.asarray(self.canonicalise(g[None])[0])

    def active(self, genomes: jax.Array) -> jax.Array:
        """bool ``[P, G]``: True where the gene changes the design."""
        return self._jit_active(jnp.atleast_2d(jnp.asarray(genomes, jnp.int32)))

    def canonicalise(self, genomes: jax.Array) -> jax.Array:
        """Set genes without effect to index 0, so one design has one genome."""
        g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
        return jnp.where(self.active(g), g, 0)

    def in_range(self, genomes: jax.Array) -> jax.Array:
        """bool ``[P]``: every gene index within ``[0, n_choices)``."""
        g = jnp.atleast_2d(jnp.asarray(genomes))
        return jnp.all((g >= 0) & (g < jnp.asarray(self.n_choices)), axis=-1)

    def hash(self, genomes: jax.Array) -> jax.Array:
        """Stable 64-bit hash of the canonical design, uint32 ``[P, 2]``.

        Pure integer arithmetic (murmur3 mixing of gene index, value and space name), so it
        is the same on every platform, run and device.
        """
        g = self.canonicalise(genomes).astype(jnp.uint32)
        pos = jnp.arange(self.n_genes, dtype=jnp.uint32)
        out = []
        for seed in (np.uint32(0x9E3779B9), np.uint32(0x7F4A7C15)):
            x = _fmix32(g * jnp.uint32(0x01000193) + pos * jnp.uint32(0x2C1B3C6D) + (self._salt ^ seed))
            # order-aware sum then xor-fold of a second mixed stream: robust and vectorised
            s = jnp.sum(x, axis=-1, dtype=jnp.uint32)
            r = jnp.bitwise_xor.reduce(_fmix32(x + seed), axis=-1)
            out.append(_fmix32(s ^ (r * jnp.uint32(0x27D4EB2F))))
        return jnp.stack(out, axis=-1)

    def workloads(self, genomes: jax.Array):
        """Fixed-shape layer table ``[P, L]`` (see ``cimnas_jax.workload.LayerTable``).
        Genome path: casts to int32 (zero gradient); see ``workloads_from_values``."""
        return self._jit_workloads(jnp.atleast_2d(jnp.asarray(genomes, jnp.int32)))

    def hardware(self, genomes: jax.Array):
        """Hardware parameters ``[P]`` (see ``cimnas_jax.workload.HardwareParams``).
        Genome path: casts to int32 (zero gradient); see ``hardware_from_values``."""
        return self._jit_hardware(jnp.atleast_2d(jnp.asarray(genomes, jnp.int32)))

    def architecture(self, genomes: jax.Array) -> dict[str, jax.Array]:
        """Arrays a supernet needs (depths, kernels, channels, bits)."""
        if self._architecture_fn is None:
            raise NotImplementedError(f"space '{self.name}' has no supernet architecture decoder")
        return self._jit_architecture(jnp.atleast_2d(jnp.asarray(genomes, jnp.int32)))

    # ----------------------------------------------------------------- host side
    def hash_hex(self, genomes) -> list[str]:
        """Canonical design hashes as 16-hex-digit strings."""
        h = np.asarray(self.hash(genomes))
        return [f"{a:08x}{b:08x}" for a, b in h]

    def check(self, genomes) -> np.ndarray:
        """Validate a genome batch on the host; raise ValueError naming the first bad gene."""
        g = np.asarray(genomes)
        if g.ndim == 1:
            g = g[None]
        if g.ndim != 2 or g.shape[1] != self.n_genes:
            raise ValueError(
                f"space '{self.name}': genomes must have shape [P, {self.n_genes}], got {tuple(np.shape(genomes))}"
            )
        if not np.issubdtype(g.dtype, np.integer):
            if not np.all(np.isfinite(g)) or not np.all(g == np.round(g)):
                raise ValueError(f"space '{self.name}': genomes must hold integer choice indices")
            g = g.astype(np.int64)
        bad = (g < 0) | (g >= self.n_choices)
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            gene = self.genes[col]
            raise ValueError(
                f"space '{self.name}', genome {row}: gene '{gene.name}' has index {int(g[row, col])}, "
                f"allowed 0..{len(gene.choices) - 1} (choices {list(gene.choices)})"
            )
        return g.astype(np.int32)

    def encode(self, values: Mapping[str, float]) -> np.ndarray:
        """Genome (int32 ``[G]``) from physical values by gene name; unnamed genes take index 0."""
        unknown = set(values) - set(self.gene_names)
        if unknown:
            raise ValueError(f"space '{self.name}': unknown gene(s) {sorted(unknown)}")
        out = np.zeros(self.n_genes, np.int32)
        for name, v in values.items():
            gene = self.genes[self.index[name]]
            matches = [i for i, c in enumerate(gene.choices) if math.isclose(c, v, rel_tol=1e-6, abs_tol=1e-9)]
            if not matches:
                raise ValueError(f"gene '{name}': value {v} not among choices {list(gene.choices)}")
            out[self.index[name]] = matches[0]
        return out

    def raw_size(self) -> int:
        """Number of raw genomes (counts genes without effect, as CIMNAS does)."""
        return math.prod(int(n) for n in self.n_choices)

    def canonical_size(self) -> int:
        """Number of distinct designs: enumerate structural genes, multiply the active rest."""
        struct = [i for i, g in enumerate(self.genes) if g.structural]
        total = 0
        combos = np.array(np.meshgrid(*[np.arange(self.n_choices[i]) for i in struct], indexing="ij"))
        combos = combos.reshape(len(struct), -1).T
        base = np.zeros((len(combos), self.n_genes), np.int32)
        base[:, struct] = combos
        active = np.asarray(self.active(base))
        canon = np.asarray(self.canonicalise(base))
        for row in range(len(combos)):
            if not np.array_equal(canon[row], base[row]):
                continue  # a structural gene without effect: counted at index 0 only
            n = 1
            for i in range(self.n_genes):
                if i not in struct and active[row, i]:
                    n *= int(self.n_choices[i])
            total += n
        return total


_REGISTRY: dict[str, Callable[[], Space]] = {}
_CACHE: dict[str, Space] = {}


def register_space(name: str, builder: Callable[[], Space]) -> None:
    """Register a space builder under ``name`` (a new space is a new file that calls this)."""
    _REGISTRY[name] = builder


def space_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_space(name: str) -> Space:
    """The registered space called ``name`` (built once, then shared)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown space {name!r}; allowed: {list(space_names())}")
    if name not in _CACHE:
        _CACHE[name] = _REGISTRY[name]()
    return _CACHE[name]
