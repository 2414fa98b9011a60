"""Subnet evaluation: per-subnet batch-norm re-estimation on a fixed calibration batch,
then accuracy on an evaluation set.  One compiled function serves every subnet and every
bit-width (the architecture dict is an array input); ``SubnetEvaluator.n_traces`` counts
how often it was traced.
"""

from __future__ import annotations

import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.nets.family import family_of
from cimnas_jax.nets.supernet import Supernet


def _pool_stats(stats):
    """Pool per-chunk BN stats (leaves [n_chunks, C]): mean of means, pooled variance."""
    if isinstance(stats, Mapping) and set(stats.keys()) == {"mean", "var"}:
        m, v = stats["mean"], stats["var"]
        mean = jnp.mean(m, 0)
        var = jnp.mean(v + jnp.square(m), 0) - jnp.square(mean)
        return {"mean": mean, "var": jnp.maximum(var, 0.0)}
    return {k: _pool_stats(v) for k, v in stats.items()}


def chunk(x: np.ndarray, chunk_size: int, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """[N,...] -> ([n, chunk_size, ...] padded with ``fill``, valid mask [n, chunk_size])."""
    n = -(-len(x) // chunk_size)
    pad = n * chunk_size - len(x)
    valid = np.concatenate([np.ones(len(x), bool), np.zeros(pad, bool)])
    if pad:
        x = np.concatenate([x, np.full((pad,) + x.shape[1:], fill, x.dtype)])
    return x.reshape((n, chunk_size) + x.shape[1:]), valid.reshape(n, chunk_size)


def make_eval_fn(model: Supernet):
    """(params, arch, calib_x [nc,cb,H,W,C], x [ne,eb,H,W,C], y [ne,eb], valid [ne,eb])
    -> (n_correct, sum of cross-entropy, n, correct bool [ne,eb]) for one subnet (``correct``: each
    image's outcome, for paired comparisons of two subnets on the same images).  Not jitted here."""

    def calibrate(params, arch, calib_x):
        def body(_, xb):
            _, v = model.apply({"params": params}, xb, arch, train=True, mutable=["bn_stats"])
            return None, v["bn_stats"]
        _, stats = jax.lax.scan(body, None, calib_x)
        return _pool_stats(stats)

    def evaluate(params, arch, calib_x, x, y, valid):
        stats = calibrate(params, arch, calib_x)

        def body(carry, batch):
            xb, yb, vb = batch
            logits = model.apply({"params": params, "bn_stats": stats}, xb, arch, train=False)
            logp = jax.nn.log_softmax(logits)
            nll = -jnp.take_along_axis(logp, yb[:, None], -1)[:, 0]
            correct = (jnp.argmax(logits, -1) == yb) & vb
            return (carry[0] + jnp.sum(correct), carry[1] + jnp.sum(jnp.where(vb, nll, 0.0))), correct

        (nc, nll), correct = jax.lax.scan(body, (jnp.zeros((), jnp.int32), jnp.zeros(())), (x, y, valid))
        return nc, nll, jnp.sum(valid), correct

    return evaluate, calibrate


class SubnetEvaluator:
    """Accuracy of subnets of one supernet (any family: cimnas_jax.nets.family) on fixed
    calibration / evaluation images.

    calib_x, eval_x: float32 NHWC (already preprocessed); eval_y: int labels."""

    def __init__(self, model: Supernet, params, calib_x: np.ndarray, eval_x: np.ndarray,
                 eval_y: np.ndarray, calib_chunk: int = 256, eval_chunk: int = 500):
        self.model, self.params = model, params
        self.family = family_of(model)
        self.n_traces = 0
        cx, _ = chunk(np.asarray(calib_x, np.float32), min(calib_chunk, len(calib_x)))
        if len(calib_x) % cx.shape[1]:
            cx = cx[:-1]  # drop a ragged calibration chunk: padding would bias the statistics
        ex, valid = chunk(np.asarray(eval_x, np.float32), min(eval_chunk, len(eval_x)))
        ey, _ = chunk(np.asarray(eval_y, np.int32), ex.shape[1])
        self.calib_x, self.x, self.y, self.valid = map(jnp.asarray, (cx, ex, ey, valid))
        self.n_calib, self.n_eval = int(cx.shape[0] * cx.shape[1]), int(len(eval_x))
        evaluate, _ = make_eval_fn(model)

        def traced(*args):
            self.n_traces += 1  # runs only while tracing
            return evaluate(*args)

        self._fn = jax.jit(traced)

    def accuracy(self, arch: Mapping, per_image: bool = False) -> dict:
        """One subnet (unbatched arch dict of the model's family) -> {'accuracy', 'loss',
        'n_images', 'seconds'} (+ 'correct', bool [n_images] in image order, with ``per_image``).
        ValueError naming the key if the dict is not a valid subnet."""
        self.family.check_arch(arch)
        t = time.perf_counter()
        nc, nll, n, correct = self._fn(self.params, self.family.to_device(arch), self.calib_x, self.x, self.y,
                                       self.valid)
        nc, nll, n = int(nc), float(nll), int(n)
        out = dict(accuracy=nc / n, loss=nll / n, n_images=n, seconds=time.perf_counter() - t)
        if per_image:
            out["correct"] = np.asarray(correct)[np.asarray(self.valid)]
        return out

    def accuracies(self, archs: Mapping) -> list[dict]:
        """Batched arch dict ([P, ...] leaves, e.g. sp.architecture(genomes)) -> P results."""
        a = self.family.check_arch(archs)
        if a["depths"].ndim == 1:
            return [self.accuracy(a)]
        return [self.accuracy(self.family.index_arch(a, i)) for i in range(a["depths"].shape[0])]


def accuracy_of_genomes(evaluator: SubnetEvaluator, space, genomes) -> list[dict]:
    """Accuracy of a batch of genomes of ``space`` (uses space.architecture)."""
    return evaluator.accuracies({k: np.asarray(v) for k, v in space.architecture(genomes).items()})


__all__ = ["SubnetEvaluator", "make_eval_fn", "accuracy_of_genomes", "chunk"]


def evaluator_for(model: Supernet, params, ds, split: str = "val", n_images: int = 0,
                  n_calib: int = 1024, calib_seed: int = 1) -> SubnetEvaluator:
    """SubnetEvaluator on ``split`` of a cimnas_jax.data.Dataset: the first n_images (0 = all)
    of the split; BN calibration on n_calib training images chosen with a fixed seed."""
    from cimnas_jax.data import preprocess

    x, y = ds.split(split)
    if n_images:
        x, y = x[:n_images], y[:n_images]
    rng = np.random.default_rng(calib_seed)
    xc = ds.x_train[rng.choice(len(ds.x_train), min(n_calib, len(ds.x_train)), replace=False)]
    res = model.cfg.resolution
    return SubnetEvaluator(model, params, preprocess(xc, res), preprocess(x, res), y)
