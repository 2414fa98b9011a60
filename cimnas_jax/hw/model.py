"""Analytic compute-in-memory model (pure JAX) mirroring CiMLoop's basic_analog macro,
input_output_bufs tile, large_router_glb chip and ws_dummy_buffer_many_macro system.

Per layer: weights are mapped onto crossbars (ceil(W / bits-per-cell) columns per weight, one
depthwise channel per macro), copies go to spare macros to parallelise output rows (P; Q stays
temporal, as timeloop's mapper does here), and per-component action counts (array reads, input
pulse trains, ADC conversions, buffer / router / GLB traffic) are multiplied by per-action energies
that follow supply voltage, clock, crossbar size, ADC resolution and the technology file.
All functions broadcast over leading axes ([P, L] layers with [P] hardware) and are jit/vmap/grad
safe (ceil/floor only on discrete quantities).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from cimnas_jax.hw.tech import Technology
from cimnas_jax.vocab import AREA_COMPONENTS, ENERGY_COMPONENTS, KIND_DEPTHWISE  # noqa: F401 (re-exported)
OUTPUT_BITS = 8.0
GLB_REF_BYTES = 8.0 * 2 ** 20
_LN10_10 = jnp.log(10.0) / 10.0


def _interp_loglog(x_ln, knots_ln, vals_ln):
    """Piecewise-linear interpolation in log-log with linear extrapolation at both ends."""
    knots_ln, vals_ln = jnp.asarray(knots_ln), jnp.asarray(vals_ln)
    n = knots_ln.shape[0]
    i = jnp.clip(jnp.searchsorted(knots_ln, x_ln) - 1, 0, n - 2)
    x0, x1 = knots_ln[i], knots_ln[i + 1]
    y0, y1 = vals_ln[i], vals_ln[i + 1]
    return y0 + (y1 - y0) * (x_ln - x0) / (x1 - x0)


# Accelergy ADC plug-in (accelergy-adc-plug-in ff0fb48, adc_data/model.yaml) constants that the
# technology file does not carry: the per-bit slope of the FOM ceiling (max_by_enob[b] = icpt + 3.2205 b),
# and the energy's node / resolution terms (ln E += 1.8800 ln node - 2.8291 ln bits).
ADC_FOM_MAX_PER_BIT = 3.2205115109775584
ADC_E_NODE_SLOPE = 1.8800369206815004
ADC_E_BITS_SLOPE = -2.8291256050594527


def adc_energy_area(c: dict, node_nm, adc_bits, cols, voltage, clock_s, n_adc=16.0):
    """ADC energy per conversion before voltage scaling [J] and area of one macro's ADC bank [m^2].

    The accelergy ADC plug-in's model as CiMLoop calls it (basic_analog: one bank of ``n_adc``
    ADCs per macro, bank throughput = columns / cycle, cycle = clock / V):
      f = cols V / clock / n_adc x exp(adc_lnf_shift)                 per-ADC sample rate [Hz]
      FOM = min(adc_fom_icpt - adc_fom_slope ln f, adc_fom_max + 3.2205 ceil(bits))   [dB]
      ln E[pJ] = adc_e0 - ln10/10 (FOM - SNDR) + 1.8800 ln node - 2.8291 ln bits,
                 SNDR = 6.02 bits + 1.76
      area = n_adc exp(adc_a0 + adc_a_t ln node + adc_a_f ln f + adc_a_e ln E[pJ] + adc_a_b bits) um^2
    With the plug-in's coefficients (adc_a_b = 0, adc_lnf_shift = 0) this reproduces CiMLoop's ADC
    area to 1e-5 and its energy per conversion in both reference sets.
    """
    lnf = jnp.log(cols * voltage / (clock_s * n_adc)) + c["adc_lnf_shift"]
    sndr = adc_bits * 20.0 * jnp.log10(2.0) + 10.0 * jnp.log10(1.5)
    fom_cap = c["adc_fom_max"] + ADC_FOM_MAX_PER_BIT * jnp.clip(jnp.ceil(adc_bits), 0.0, 20.0)
    fom = jnp.minimum(c["adc_fom_icpt"] - c["adc_fom_slope"] * lnf, fom_cap)
    ln_e_pj = (c["adc_e0"] - _LN10_10 * (fom - sndr) + ADC_E_NODE_SLOPE * jnp.log(node_nm)
               + ADC_E_BITS_SLOPE * jnp.log(adc_bits))
    ln_a_um2 = (c["adc_a0"] + c["adc_a_t"] * jnp.log(node_nm) + c["adc_a_f"] * lnf + c["adc_a_e"] * ln_e_pj
                + c["adc_a_b"] * adc_bits)
    return jnp.exp(ln_e_pj) * 1e-12, n_adc * jnp.exp(ln_a_um2) * 1e-12


def _place(nw, mpt, tiles, rg):
    """Place one weight copy (nw macros) on the spatial levels macro-in-tile, tile, router group
    (innermost first); a level's spare fan-out floor(size / used) holds copies that split output
    rows P. Returns (temporal weight passes T, total duplication, spare fan-out per level
    (macro, tile, router group))."""
    rem, dup, lefts = nw, 1.0, []
    for size in (mpt, tiles, rg):
        used = jnp.minimum(rem, size)
        left = jnp.floor(size / used)
        lefts.append(left)
        dup = dup * left
        rem = jnp.ceil(rem / used)
    return rem, dup, tuple(lefts)


def slice_factor(c: dict, weight_bits, bits_per_cell):
    """Array read cost of one weight relative to one full cell: full slices count 1; a partial
    last slice holding r < bits-per-cell bits costs a + b x (mean stored level) with the level
    (2^r - 1) / 2 / (2^bpc - 1) (CiMLoop's value-dependent cell read, uniform weights)."""
    n = jnp.ceil(weight_bits / bits_per_cell)
    r = weight_bits - (n - 1.0) * bits_per_cell
    level = (2.0 ** r - 1.0) / 2.0 / (2.0 ** bits_per_cell - 1.0)
    part = jnp.where((n > 1.0) & (r < bits_per_cell), c["cim_slice_a"] + c["cim_slice_b"] * level, 1.0)
    return (n - 1.0) + part


@flax.struct.dataclass
class LayerShape:
    """A layer in mapping terms, every field ``[..., L]``: groups (depthwise: C, one per macro; else 1),
    channels per group in/out, kernel R x S, output P x Q, input size H x W (with halo), stride, bits."""

    groups: jax.Array
    c_per_group: jax.Array
    m_per_group: jax.Array
    R: jax.Array
    S: jax.Array
    P: jax.Array
    Q: jax.Array
    H: jax.Array
    W: jax.Array
    C: jax.Array
    stride: jax.Array
    input_bits: jax.Array
    weight_bits: jax.Array
    depthwise: jax.Array  # bool


@flax.struct.dataclass
class Mapping:
    """How one layer sits on the chip (discrete, as timeloop's mapper places it), ``[..., L]``.

    slices: columns per weight (ceil(W / bits per cell)); row_tiles / col_tiles: crossbars a weight
    copy spans down / across; macros_per_copy: row_tiles x col_tiles x groups; passes: weight passes
    when one copy does not fit at once (T); copies: spare fan-out that holds extra weight copies;
    spare_macro / spare_tile / spare_router: that fan-out per level; p_parallel: output rows computed
    at once (min(P, copies)); p_steps: temporal steps over P; cycles; latency_s [s]."""

    slices: jax.Array
    row_tiles: jax.Array
    col_tiles: jax.Array
    macros_per_copy: jax.Array
    passes: jax.Array
    copies: jax.Array
    spare_macro: jax.Array
    spare_tile: jax.Array
    spare_router: jax.Array
    p_parallel: jax.Array
    p_steps: jax.Array
    cycles: jax.Array
    latency_s: jax.Array


@flax.struct.dataclass
class Actions:
    """Per-layer action counts, ``[..., L]``: pulses per input value (temporal DAC, 2^ib - 1), MACs,
    row_inputs (input values applied to rows), outputs, in_bits / out_bits (feature maps), and the
    global-buffer traffic terms: p_macro / p_tile / p_router (the P split per level, innermost
    first), rows_per_router (output rows one router-level copy computes per step), footprint (input
    rows it reads), row_reread (input rows read / H: halos across routers and P steps), col_reuse
    (Q S / W: sliding-window reuse along Q), c_passes / m_passes (weight passes that split C -> partial
    sums, or M -> input re-reads), multi_pass (several passes, non-depthwise)."""

    pulses: jax.Array
    macs: jax.Array
    row_inputs: jax.Array
    outputs: jax.Array
    in_bits: jax.Array
    out_bits: jax.Array
    p_macro: jax.Array
    p_tile: jax.Array
    p_router: jax.Array
    rows_per_router: jax.Array
    footprint: jax.Array
    row_reread: jax.Array
    col_reuse: jax.Array
    c_passes: jax.Array
    m_passes: jax.Array
    multi_pass: jax.Array


def _hw_col(x):
    return x[..., None]   # hardware [...] against layers [..., L]


def layer_shape(layers) -> LayerShape:
    C, M, R, S, P, Q = layers.C, layers.M, layers.R, layers.S, layers.P, layers.Q
    stride = layers.stride
    dw = layers.kind == KIND_DEPTHWISE
    return LayerShape(groups=jnp.where(dw, C, 1.0), c_per_group=jnp.where(dw, 1.0, C),
                      m_per_group=jnp.where(dw, 1.0, M), R=R, S=S, P=P, Q=Q,
                      H=(P - 1.0) * stride + R, W=(Q - 1.0) * stride + S, C=C, stride=stride,
                      input_bits=layers.input_bits, weight_bits=layers.weight_bits, depthwise=dw)


def map_layer(shape: LayerShape, hw) -> Mapping:
    """Crossbar tiles per weight copy, copies into spare macros, cycles and latency
    (``cycles = Q x ceil(P / min(P, copies)) x passes``; ``latency = cycles x clock / V``)."""
    slices = jnp.ceil(shape.weight_bits / _hw_col(hw.bits_per_cell))
    row_tiles = jnp.ceil(shape.c_per_group * shape.R * shape.S / _hw_col(hw.rows))
    col_tiles = jnp.ceil(shape.m_per_group * slices / _hw_col(hw.cols))
    per_copy = row_tiles * col_tiles * shape.groups
    passes, copies, (spare_m, spare_t, spare_rg) = _place(per_copy, _hw_col(hw.macros_per_tile), _hw_col(hw.tiles),
                                                          _hw_col(hw.router_group))
    p_parallel = jnp.minimum(shape.P, copies)
    p_steps = jnp.ceil(shape.P / p_parallel)
    cycles = shape.Q * p_steps * passes
    latency_s = cycles * _hw_col(hw.clock_period_s) / _hw_col(hw.voltage_v)
    return Mapping(slices=slices, row_tiles=row_tiles, col_tiles=col_tiles, macros_per_copy=per_copy,
                   passes=passes, copies=copies, spare_macro=spare_m, spare_tile=spare_t, spare_router=spare_rg,
                   p_parallel=p_parallel, p_steps=p_steps, cycles=cycles, latency_s=latency_s)


def action_counts(shape: LayerShape, m: Mapping) -> Actions:
    """Action counts of one inference. GLB -> router input traffic: each router-level copy reads its
    own rows (halo re-read, no multicast across routers); each temporal P step re-reads its halo; Q
    slides (fitted reuse). The mapper fills the P split innermost first (macro, then tile, then router
    group), so only what the lower levels cannot take is split across routers."""
    G, Cg, Mg = shape.groups, shape.c_per_group, shape.m_per_group
    R, S, P, Q, H, dw = shape.R, shape.S, shape.P, shape.Q, shape.H, shape.depthwise
    outputs = G * Mg * P * Q
    p_macro = jnp.minimum(P, m.spare_macro)
    p_tile = jnp.minimum(jnp.ceil(P / p_macro), m.spare_tile)
    p_router = jnp.minimum(jnp.ceil(P / (p_macro * p_tile)), m.spare_router)
    rows_per_router = jnp.ceil(P / (m.p_steps * p_router))
    footprint = jnp.minimum((rows_per_router - 1.0) * shape.stride + R, H)
    c_passes = jnp.where(dw, 1.0, jnp.minimum(m.passes, m.row_tiles))   # temporal split of C -> partial sums
    return Actions(
        pulses=2.0 ** shape.input_bits - 1.0, macs=G * Cg * Mg * R * S * P * Q, row_inputs=P * Q * G * Cg * R * S,
        outputs=outputs, in_bits=shape.C * H * shape.W * shape.input_bits, out_bits=outputs * OUTPUT_BITS,
        p_macro=p_macro, p_tile=p_tile, p_router=p_router, rows_per_router=rows_per_router, footprint=footprint,
        row_reread=m.p_steps * p_router * footprint / H, col_reuse=Q * S / shape.W,
        c_passes=c_passes, m_passes=jnp.where(dw, 1.0, m.passes / c_passes),   # temporal split of M -> re-reads
        # several weight passes (passes > 1) put a temporal M/C loop inside P, Q: the sliding-window
        # reuse along Q is lost, each output pixel's window is re-read
        multi_pass=(m.passes > 1.0) & ~dw)


def component_energies(tech: Technology, shape: LayerShape, m: Mapping, a: Actions, hw, adc_bits=None) -> dict:
    """Energy per component [J] ``{name: [..., L]}`` (names ``ENERGY_COMPONENTS``; absent ones 0).
    Products of powers are evaluated as exp(sum of logs): one exp per term (CPU throughput)."""
    c = tech.coef
    V, clk, rows, cols = _hw_col(hw.voltage_v), _hw_col(hw.clock_period_s), _hw_col(hw.rows), _hw_col(hw.cols)
    mpt, glb_bytes = _hw_col(hw.macros_per_tile), _hw_col(hw.glb_bytes)
    abits = _hw_col(hw.adc_bits if adc_bits is None else adc_bits)
    dw = shape.depthwise
    exp_reread = jnp.where(dw, c["glb_fp_exp_dw"], jnp.where(a.multi_pass, c["glb_fp_exp_t"], c["glb_fp_exp"]))
    exp_reuse = jnp.where(dw, c["glb_fq_exp_dw"], jnp.where(a.multi_pass, c["glb_fq_exp_t"], c["glb_fq_exp"]))
    ln = jnp.log
    ln_in_traffic = (ln(a.in_bits) + exp_reread * ln(a.row_reread) + exp_reuse * ln(a.col_reuse)
                     + c["glb_tm_exp"] * ln(a.m_passes))
    out_traffic = a.out_bits * (1.0 + jnp.maximum(c["glb_psum"], 0.0) * (a.c_passes - 1.0))  # psum read-modify-write
    ln_out_traffic = ln(out_traffic)
    lnV = ln(V)
    ln_pulses, ln_ib, ln_ct, ln_rt, ln_sl = ln(a.pulses), ln(shape.input_bits), ln(m.col_tiles), ln(m.row_tiles), \
        ln(m.slices)
    ln_rin, ln_outs = ln(a.row_inputs), ln(a.outputs)
    ln_convs = ln_outs + ln_rt + ln_sl                         # ADC conversions = outputs x row tiles x slices
    adc_e, _ = adc_energy_area(c, tech.node_nm, abits, cols, V, clk, _hw_col(hw.n_adc_per_bank))
    ld = jnp.log2(glb_bytes / GLB_REF_BYTES)
    ln_glb_scale = c["glb_e1"] * ld + c["glb_e2"] * ld ** 2
    ex = jnp.exp
    en = {
        "cim_unit": ex(c["ln_e_cim"] + ln(a.macs) + ln_pulses + c["cim_v_exp"] * lnV)
        * slice_factor(c, shape.weight_bits, _hw_col(hw.bits_per_cell)),
        # per input pulse on one column tile: wordline charge (cols^k V^2) + driver-sizing term
        "row_drivers": ex(c["ln_e_row"] + ln_rin + ln_ct + c["row_pulse_exp"] * ln_pulses + c["row_ib_exp"] * ln_ib
                          + c["row_cols_exp"] * ln(cols) + 2.0 * lnV)
                       + ex(c["ln_e_row2"] + ln_rin + ln_ct + c["row_pulse_exp"] * ln_pulses + c["row_ib_exp"] * ln_ib
                            + c["row2_cols_exp"] * ln(cols) + c["row2_v_exp"] * lnV),
        "column_drivers": ex(c["ln_e_col"] + ln_convs + 2.0 * lnV),
        "adc": ex(ln_convs + ln(adc_e) + 2.0 * lnV),
        "input_buffer": ex(c["ln_e_ibuf"] + ln_rin + c["ibuf_ib_exp"] * ln_ib + c["ibuf_ct_exp"] * ln_ct
                           + c["ibuf_size_exp"] * ln(rows * mpt)),
        "output_buffer": ex(c["ln_e_obuf"] + ln_outs + jnp.log(OUTPUT_BITS) + c["obuf_rt_exp"] * ln_rt
                            + c["obuf_sl_exp"] * ln_sl + c["obuf_size_exp"] * ln(cols * mpt)),
        "router": ex(c["ln_e_router_in"] + ln_in_traffic) + ex(c["ln_e_router_out"] + ln_out_traffic),
        "glb": ex(ln_glb_scale + c["ln_e_glb_in"] + ln_in_traffic) + ex(ln_glb_scale + c["ln_e_glb_out"] + ln_out_traffic),
    }
    for k in tech.absent_components:
        en[k] = jnp.zeros_like(en[k])
    return en


def layer_fits(tech: Technology, a: Actions, hw) -> jax.Array:
    """bool ``[..., L]``: input + output feature maps (bytes) <= ok_theta x GLB bytes (else timeloop
    finds no valid mapping)."""
    return (a.in_bits + a.out_bits) / 8.0 <= tech.coef["ok_theta"] * _hw_col(hw.glb_bytes)


def layer_model(tech: Technology, layers, hw, adc_bits=None):
    """Per-layer cycles, latency [s], energy breakdown [J] and the feasibility flag.

    ``layers``: LayerTable-like with fields [..., L]; ``hw``: HardwareParams-like with fields [...].
    Returns dict: cycles, latency_s, energy_j {component: [..., L]}, ok (bool [..., L]),
    macros_per_copy. The parts: ``layer_shape`` -> ``map_layer`` -> ``action_counts`` ->
    ``component_energies`` / ``layer_fits``.
    """
    shape = layer_shape(layers)
    m = map_layer(shape, hw)
    a = action_counts(shape, m)
    en = component_energies(tech, shape, m, a, hw, adc_bits)
    return {"cycles": m.cycles, "latency_s": m.latency_s, "energy_j": en, "ok": layer_fits(tech, a, hw),
            "macros_per_copy": m.macros_per_copy}


def chip_area(tech: Technology, hw, max_slices, adc_bits=None):
    """Chip area breakdown [m^2] for hardware [...]; depends only on hardware and bits
    (``max_slices``: columns per weight of the widest layer)."""
    c = tech.coef
    V, clk, rows, cols = hw.voltage_v, hw.clock_period_s, hw.rows, hw.cols
    rg, tiles, mpt = hw.router_group, hw.tiles, hw.macros_per_tile
    N = rg * tiles * mpt
    abits = hw.adc_bits if adc_bits is None else adc_bits
    _, adc_a = adc_energy_area(c, tech.node_nm, abits, cols, V, clk, hw.n_adc_per_bank)

    def buf(p, ent):
        le = jnp.log(ent)
        return jnp.exp(c[p + "_a0"] + c[p + "_a1"] * le + c[p + "_a2"] * le ** 2 + c[p + "_a3"] * jnp.log(mpt))

    glb = jnp.exp(_interp_loglog(jnp.log(hw.glb_bytes), tech.glb_ln_bytes, tech.glb_ln_area))
    out = {
        "cim_unit": N * rows * cols * tech.cell_area_m2,
        "row_drivers": N * rows * jnp.exp(c["ln_a_row"]),
        "column_drivers": N * jnp.exp(c["ln_a_col"]) * cols ** c["col_cols_exp"] * max_slices ** c["col_sl_exp"],
        "adc": N * adc_a,
        "input_buffer": rg * tiles * buf("ibuf", rows * mpt),
        "output_buffer": rg * tiles * buf("obuf", cols * mpt),
        "router": rg * jnp.exp(c["ln_a_router"]),
        "glb": glb,
    }
    for k in tech.absent_components:
        out[k] = jnp.zeros_like(out[k])
    return out
