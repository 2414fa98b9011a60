"""Quantization-aware supernet training (sandwich rule + in-place distillation) and
subnet fine-tuning.  Pure jitted steps over a flax.struct TrainState; host loops live in
experiments/train_supernet.py and experiments/finetune.py.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cimnas_jax.nets.arch import to_device
from cimnas_jax.nets.family import family_of
from cimnas_jax.nets.supernet import Supernet


@flax.struct.dataclass
class TrainState:
    """params + optimizer state + global step (int32 scalar)."""

    step: jax.Array
    params: dict
    opt_state: optax.OptState


def make_optimizer(total_steps: int, peak_lr: float = 3e-3, weight_decay: float = 5e-5,
                   warmup_frac: float = 0.05) -> optax.GradientTransformation:
    """AdamW with linear warm-up then cosine decay to ~0 over ``total_steps`` (one-cycle-like)."""
    sched = optax.warmup_cosine_decay_schedule(
        init_value=peak_lr / 25.0, peak_value=peak_lr,
        warmup_steps=max(1, int(warmup_frac * total_steps)), decay_steps=max(2, total_steps),
        end_value=peak_lr * 1e-3)
    return optax.chain(optax.clip_by_global_norm(5.0), optax.adamw(sched, weight_decay=weight_decay))


def lr_at(frac: float, peak_lr: float, warmup_frac: float = 0.05) -> float:
    """make_optimizer's warm-up/cosine learning rate as a function of progress in [0, 1]
    (for time-budgeted training, where the number of steps is not known up front). Host numpy
    on purpose: evaluating the optax schedule would put device work, and a sync with the
    training steps in flight, into every step; tests pin it to the optax schedule."""
    frac = min(max(float(frac), 0.0), 1.0)
    lo, end = peak_lr / 25.0, peak_lr * 1e-3
    if frac < warmup_frac:
        return lo + (peak_lr - lo) * frac / warmup_frac
    t = (frac - warmup_frac) / max(1e-9, 1.0 - warmup_frac)
    return end + (peak_lr - end) * 0.5 * (1.0 + np.cos(np.pi * t))


def make_budget_optimizer(peak_lr: float = 3e-3, weight_decay: float = 5e-5) -> optax.GradientTransformation:
    """make_optimizer with the learning rate held in the optimizer state (optax.inject_hyperparams),
    set by the host each step with set_learning_rate: one compiled step serves any schedule."""
    return optax.chain(optax.clip_by_global_norm(5.0),
                       optax.inject_hyperparams(optax.adamw)(learning_rate=peak_lr, weight_decay=weight_decay))


def set_learning_rate(state: "TrainState", lr: float) -> "TrainState":
    """state with the learning rate of a make_budget_optimizer state replaced."""
    clip, inj = state.opt_state
    hp = dict(inj.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
    return state.replace(opt_state=(clip, inj._replace(hyperparams=hp)))


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def sandwich_archs(seed: int, step: int, n_random: int = 2, family=None) -> dict:
    """Subnets of one sandwich step, deterministic in (seed, step) so resumption is exact:
    [largest @ 8 bit, smallest @ 4 bit, n_random random subnets with random bits] of
    ``family`` (a cimnas_jax.nets.family name or record; None = mbv2)."""
    fam = family_of(family)
    rng = np.random.default_rng([seed, step])
    archs = [fam.largest_arch(8), fam.smallest_arch(4)]
    archs += [fam.random_arch(rng) for _ in range(n_random)]
    return fam.stack_archs(archs)


def _map_subnets(fwd, archs, how: str):
    """Logits [K,B,C] of the K subnets of ``archs`` ({k: [K, ...]}): ``vmap`` (one batched
    graph) or ``loop`` (K copies of the graph, unrolled: the weights stay unbatched, which keeps
    ``lax.conv`` fast on XLA:CPU; same values). ResNet sandwich step (K = 4, 28 px, w 0.125,
    batch 128, 2-core CPU): loop 0.62 s per subnet, vmap 0.9 s per subnet (same run); a lax.scan
    over the subnets took ~3 s per subnet in an earlier run on a busier machine."""
    if how == "vmap":
        return jax.vmap(fwd)(archs)
    if how != "loop":
        raise ValueError(f"subnet_map must be 'vmap' or 'loop'; got {how!r}")
    K = jax.tree.leaves(archs)[0].shape[0]
    return jnp.stack([fwd(jax.tree.map(lambda v: v[i], archs)) for i in range(K)])


def make_train_step(model: Supernet, tx: optax.GradientTransformation, kd_weight: float = 0.5,
                    subnet_map: Optional[str] = None):
    """jit(step)(state, x [B,H,W,C] float32, y int32[B], archs {k: [K,...]}) -> (state, metrics).

    Loss = mean over the K subnets; subnet 0 is the teacher (plain cross-entropy), the others
    mix cross-entropy and distillation from the teacher's (stop-gradient) soft labels.
    ``subnet_map``: how the K subnets run (``_map_subnets``; None = the model family's)."""
    how = subnet_map or family_of(model).subnet_map

    def loss_fn(params, x, y, archs):
        logits = _map_subnets(lambda a: model.apply({"params": params}, x, a, train=True), archs, how)
        logp = jax.nn.log_softmax(logits)                                    # [K,B,C]
        ce = -jnp.mean(jnp.take_along_axis(logp, y[None, :, None], -1)[..., 0], axis=-1)
        teacher = jax.lax.stop_gradient(jax.nn.softmax(logits[0]))
        kd = -jnp.mean(jnp.sum(teacher[None] * logp, -1), -1)               # [K]
        K = logits.shape[0]
        w = kd_weight * (jnp.arange(K) > 0)
        loss = jnp.mean((1.0 - w) * ce + w * kd)
        acc = jnp.mean(jnp.argmax(logits, -1) == y[None], axis=-1)          # [K]
        return loss, (ce, acc)

    @jax.jit
    def step(state: TrainState, x, y, archs):
        (loss, (ce, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, y, archs)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
        return new, dict(loss=loss, ce=ce, acc=acc)

    return step


def fixed_archs(arch: Mapping, k: int = 1) -> dict:
    """One subnet repeated k times along a leading axis (fine-tuning uses k = 1)."""
    return {key: np.stack([np.asarray(arch[key])] * k) for key in arch}


def finetune_subnet(model, params, ds, arch, steps: int, batch_size: int = 128, lr: float = 5e-4,
                    seed: int = 1234, log: Optional[Callable] = print):
    """Quantization-aware fine-tuning of one subnet (at its bits) from supernet weights.
    ``arch``: one subnet of the model's family (e.g. a row of sp.architecture(genomes));
    validated first (ValueError naming the key)."""
    from cimnas_jax.data import batches, preprocess

    fam = family_of(model)
    arch = fam.check_arch(arch)
    tx = make_optimizer(steps, lr, 5e-5)
    state = init_state(params, tx)
    step = make_train_step(model, tx, kd_weight=0.0)
    archs = fam.to_device(fixed_archs(arch))
    spe = max(1, len(ds.x_train) // batch_size)
    s, t0 = 0, time.time()
    while s < steps:
        for xb, yb in batches(ds.x_train, ds.y_train, batch_size, seed=seed, epoch=s // spe):
            state, m = step(state, jnp.asarray(preprocess(xb, model.cfg.resolution)), jnp.asarray(yb), archs)
            s += 1
            if log and (s % 50 == 0 or s == steps):
                log(f"  fine-tune step {s}/{steps}  loss {float(m['loss']):.4f}  "
                    f"{s * batch_size / (time.time() - t0):.0f} img/s")
            if s >= steps:
                break
    return state.params


__all__ = ["TrainState", "make_optimizer", "make_budget_optimizer", "set_learning_rate", "lr_at",
           "init_state", "sandwich_archs", "make_train_step", "fixed_archs", "to_device", "finetune_subnet"]
