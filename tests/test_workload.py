"""Workload decoder: MACs written out independently, reference networks, capacity cases."""
import jax
import numpy as np
import pytest

from cimnas_jax.space import get_space
from cimnas_jax.workload import (KIND_DEPTHWISE, HardwareParams, capacity, fits, make_layer_table,
                                 total_macs, total_weights)

from conftest import read_jsonl, shared_path


def mbv2_genome(depths, kernel, expand_last: bool, bits_idx, hw=None):
    sp = get_space("mbv2_rram")
    vals = dict(hw or {})
    for s, d in enumerate(depths[:5]):
        vals[f"depth_s{s + 1}"] = d
    g = sp.encode(vals)
    for i, gene in enumerate(sp.genes):
        if gene.name.startswith("kernel_b"):
            g[i] = gene.choices.index(kernel)
        elif gene.name.startswith("mid_ch"):
            g[i] = len(gene.choices) - 1 if expand_last else 0
        elif "_bits_b" in gene.name:
            g[i] = bits_idx
    return g


def macs_by_hand(depths, k, expand):
    """MobileNetV2 MACs counted with plain Python, independently of the decoder."""
    total = 3 * 32 * 3 * 3 * 112 * 112          # first conv
    total += 32 * 3 * 3 * 112 * 112              # first block depthwise
    total += 32 * 16 * 112 * 112                 # first block project
    c, res = 16, 112
    for w, s, d in zip((24, 40, 80, 96, 192, 320), (2, 2, 2, 1, 2, 1), depths):
        for j in range(d):
            stride = s if j == 0 else 1
            mid = c * expand
            out = res // stride
            total += c * mid * res * res + mid * k * k * out * out + mid * w * out * out
            c, res = w, out
    total += 320 * 1280 * 7 * 7 + 1280 * 1000
    return total


@pytest.mark.parametrize("depths, k, expand_last", [
    ((2, 3, 4, 3, 3, 1), 3, True),
    ((2, 2, 2, 2, 2, 1), 3, False),
    ((4, 4, 4, 4, 4, 1), 7, True),
    ((3, 2, 4, 2, 3, 1), 5, False),
])
def test_mbv2_macs_against_hand_count(depths, k, expand_last):
    sp = get_space("mbv2_rram")
    g = mbv2_genome(depths, k, expand_last, 2)
    lt = sp.workloads(g[None])
    assert int(total_macs(lt)[0]) == macs_by_hand(depths, k, 6 if expand_last else 4)
    assert int(lt.active[0].sum()) == 3 + 3 * sum(depths) + 2


def test_mbv2_matches_reference_network_layers():
    rows = read_jsonl(shared_path("cimloop_reference", "networks_layers.jsonl"))
    nets = {r["network"]: r for r in read_jsonl(shared_path("cimloop_reference", "networks.jsonl"))}
    sp = get_space("mbv2_rram")
    for name, net in nets.items():
        hw = net["hw"]
        g = mbv2_genome(net["depths"], net["kernel"], net["expand"] == 6, {4: 0, 6: 1, 8: 2}[net["bits"]], dict(
            voltage_v=hw["voltage"], bits_per_cell=hw["bits_per_cell"], clock_period_ns=hw["base_latency_s"] * 1e9,
            xbar_rows=hw["rows"], xbar_cols=hw["cols"], router_group=hw["router_group"], tiles=hw["tiles"],
            macros_per_tile=hw["macros_per_tile"], glb_mb=hw["glb_depth_words"] / 4096))
        lt, hwp = sp.workloads(g[None]), sp.hardware(g[None])
        ref = sorted((r for r in rows if r["tags"]["network"] == name), key=lambda r: r["tags"]["layer_index"])
        idx = np.flatnonzero(np.asarray(lt.active[0]))
        assert len(idx) == len(ref) == net["n_layers"]
        for i, r in zip(idx, ref):
            L = r["layer"]
            assert sp.layer_names[i] == L["name"]
            for f in ("C", "M", "R", "S", "P", "Q", "stride", "groups", "macs"):
                assert int(getattr(lt, f)[0, i]) == L[f], (name, L["name"], f)
            if i >= 3 and L["kind"] != "fc" and L["name"] != "final_expand" or net["bits"] == 8:
                # (the reference's 4-bit net also runs the fixed 8-bit layers at 4 bits)
                assert int(lt.input_bits[0, i]) == r["input_bits"] and int(lt.weight_bits[0, i]) == r["weight_bits"]
        assert int(total_macs(lt)[0]) == net["totals"]["macs"]
        if net["bits"] != 8:
            continue
        needed, avail = capacity(lt, hwp)
        assert int(needed[0]) == net["weight_cells_needed"] and int(avail[0]) == net["chip_cell_capacity"]
        assert bool(fits(lt, hwp)[0]) == net["all_weights_fit_at_once"]
        assert float(hwp.glb_bytes[0]) == hw["glb_depth_words"] * 256


def test_resnet50_layers_match_reference_shapes():
    rows = read_jsonl(shared_path("cimloop_reference_sram7nm", "layers.jsonl"))
    sp = get_space("resnet50_sram7nm")
    for wm, er in ((0.65, 0.2), (0.8, 0.25), (1.0, 0.35)):
        vals = {"width_stem": wm, **{f"width_s{s}": wm for s in range(1, 5)},
                **{f"expand_b{b:02d}": er for b in range(1, 19)}}
        g = sp.encode(vals)
        for s, top in enumerate((2, 2, 2, 2)):  # max depths
            g[sp.index[f"depth_s{s + 1}"]] = top
        lt = sp.workloads(g[None])
        table = {n: i for i, n in enumerate(sp.layer_names)}
        prefix = f"r50_wm{wm}_er{er}_"
        checked = 0
        for r in rows:
            L = r["layer"]
            if not L["name"].startswith(prefix):
                continue
            short = L["name"][len(prefix):]
            i = table[short]
            assert bool(lt.active[0, i])
            for f in ("C", "M", "R", "P", "stride", "macs"):
                assert int(getattr(lt, f)[0, i]) == L[f], (L["name"], f)
            checked += 1
        assert checked > 0


def hw1(rows=4, cols=4, rg=1, tiles=1, mpt=1, bpc=2.0):
    f = lambda x: np.array([x], np.float32)
    return HardwareParams(voltage_v=f(0.7), bits_per_cell=f(bpc), clock_period_s=f(1e-9), rows=f(rows), cols=f(cols),
                          router_group=f(rg), tiles=f(tiles), macros_per_tile=f(mpt), glb_bytes=f(2 ** 20),
                          adc_bits=f(8), n_adc_per_bank=f(16))


def test_capacity_hand_cases_including_depthwise():
    # one depthwise 3x3 on 10 channels at 8 bits, 2 bits per cell: 10·9 weights × 4 cells = 360
    # (CIMNAS counts C·R·S·M with C = M = 1: 9 × 4 = 36, which under-counts by the channel count)
    lt = make_layer_table(C=[[10, 4]], M=[[10, 6]], R=[[3, 1]], S=[[3, 1]], P=[[5, 5]], Q=[[5, 5]],
                          stride=[[1, 1]], kind=[[KIND_DEPTHWISE, 2]], input_bits=[[8, 8]],
                          weight_bits=[[8, 6]], active=[[True, True]])
    # pointwise 4→6 at 6 bits on 2 bits/cell: 24 weights × 3 cells = 72
    needed, avail = capacity(lt, hw1(rows=8, cols=8, rg=2, tiles=3, mpt=1))
    assert float(needed[0]) == 360 + 72 and float(avail[0]) == 8 * 8 * 2 * 3
    assert int(lt.macs[0, 0]) == 10 * 9 * 25 and int(total_weights(lt)[0]) == 90 + 24
    assert bool(fits(lt, hw1(rows=8, cols=8, rg=2, tiles=3, mpt=2))[0])
    assert not bool(fits(lt, hw1(rows=8, cols=8, rg=1, tiles=3, mpt=2))[0])   # 384 < 432
    # 3 bits per cell: ceil(8/3) = 3 and ceil(6/3) = 2 cells per weight
    needed3, _ = capacity(lt, hw1(bpc=3.0))
    assert float(needed3[0]) == 90 * 3 + 24 * 2
    # inactive layers cost nothing
    lt2 = lt.replace(active=np.array([[True, False]]))
    lt2 = make_layer_table(C=lt.C, M=lt.M, R=lt.R, S=lt.S, P=lt.P, Q=lt.Q, stride=lt.stride, kind=lt.kind,
                           input_bits=lt.input_bits, weight_bits=lt.weight_bits, active=[[True, False]])
    assert float(capacity(lt2, hw1())[0][0]) == 360


def test_decode_100k_is_one_jitted_call():
    sp = get_space("mbv2_rram")
    f = jax.jit(lambda k: sp.workloads(sp.sample(k, 100_000)).macs.sum(-1))
    out = f(jax.random.key(0)).block_until_ready()
    assert out.shape == (100_000,) and float(out.min()) > 1e8
