"""Declarative search spaces: named categorical genes and pure functions over genome batches.

A genome is an int32 vector of choice indices, one per gene; a population is ``[P, G]``.
Every function that takes genomes is pure and jit/vmap-able; host-side checks (``check``)
raise errors that name the offending gene.
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

    A space file builds one with its genes and four pure functions of an int32 ``[P, G]``
    genome batch: ``active_fn`` (which genes have an effect, bool ``[P, G]``), ``workloads_fn``
    (layer table), ``hardware_fn`` (hardware parameters) and ``architecture_fn`` (arrays a
    supernet needs). The space is hashable by identity so it can be a static jit argument.
    """

    def __init__(
        self,
        name: str,
        genes: Sequence[Gene],
        *,
        technology: str,
        active_fn: Callable[["Space", jax.Array], jax.Array],
        workloads_fn: Callable[["Space", jax.Array], Any],
        hardware_fn: Callable[["Space", jax.Array], Any],
        architecture_fn: Callable[["Space", jax.Array], Mapping[str, jax.Array]] | None = None,
        layer_names: Sequence[str] = (),
        description: str = "",
        notes: Mapping[str, Any] | None = None,
    ):
        _validate_genes(genes)
        self.name = name
        self.genes = tuple(genes)
        self.technology = technology
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
        # Jitted decoders: eager (op-by-op) calls of these take seconds; inside a caller's jit
        # they inline, so wrapping costs nothing there.
        self._jit_workloads = jax.jit(lambda g: workloads_fn(self, g))
        self._jit_hardware = jax.jit(lambda g: hardware_fn(self, g))
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
        """Physical value of every gene, float32 ``[P, G]`` (indices clipped into range)."""
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
        """Fixed-shape layer table ``[P, L]`` (see ``cimnas_jax.workload.LayerTable``)."""
        return self._jit_workloads(jnp.atleast_2d(jnp.asarray(genomes, jnp.int32)))

    def hardware(self, genomes: jax.Array):
        """Hardware parameters ``[P]`` (see ``cimnas_jax.workload.HardwareParams``)."""
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
