"""GPU benchmark (one prepared script, <= 8 minutes on one H200): shapes10 at 32x32.

1. Encoders: PCA-64 with 16 patch tokens (patch 8), a random projection, a SimCLR ConvEncoder
   trained for --encoder-s seconds.
2. The ``shapes`` backbone preset in bfloat16 at batch 256 with the SimCLR encoder for
   --train-s seconds; TFLOP/s of the train step from XLA's cost analysis against the H200 dense
   bf16 datasheet (~990 TFLOP/s) and the ~490 TFLOP/s an external plain JAX transformer reached.
3. DDIM-50 at scales 1, 2, 4: agreement with a shapes classifier trained here, copy distance,
   copy rate, diversity, subset TV on 3 of 10 classes, FD-shapes; then 60 %-corrupted pairs
   filtered vs unfiltered (--short-s each). Writes grid.png and results.json.

``--dry-run`` runs every stage with tiny sizes on CPU (the check CI can do).
Usage: python benchmarks/gpu_semantica.py --out DIR [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diff_protocol.io import atomic_write
from diff_semantica import (
    ConvEncoder,
    FilterConfig,
    GroupedImages,
    PairConfig,
    PCAEncoder,
    RandomProjectionEncoder,
    RunConfig,
    SemanticaConfig,
    build_pairs,
    class_agreement,
    copy_distance,
    copy_rate,
    diversity,
    reference_pair_rmse,
    sample_variations,
    set_fd,
    shapes10,
    subset_tv,
    train_encoder,
    train_semantica,
)
from diff_semantica.pictures import save_variation_grid
from diff_semantica.train import PairLoader


class ShapesClassifier(nnx.Module):
    """A small CNN over the 10 shape classes (features = its penultimate layer)."""

    def __init__(self, seed: int = 0) -> None:
        r = nnx.Rngs(seed)
        self.c1 = nnx.Conv(3, 32, (3, 3), strides=(2, 2), rngs=r)
        self.c2 = nnx.Conv(32, 64, (3, 3), strides=(2, 2), rngs=r)
        self.f = nnx.Linear(64 * 64, 128, rngs=r)
        self.o = nnx.Linear(128, 10, rngs=r)

    def features(self, x):
        h = jax.nn.relu(self.c2(jax.nn.relu(self.c1(x))))
        return jax.nn.relu(self.f(h.reshape(h.shape[0], -1)))

    def __call__(self, x):
        return self.o(self.features(x))


def train_classifier(data: GroupedImages, steps: int) -> tuple:
    model = ShapesClassifier()
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    gd, st = nnx.split((model, opt))

    @jax.jit
    def step(st, x, y):
        m, o = nnx.merge(gd, st)
        g = nnx.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(q(x), y).mean())(m)
        o.update(m, g)
        return nnx.state((m, o))

    for s in range(steps):
        idx = np.random.default_rng(s).integers(0, len(data), 256)
        st = step(st, jnp.asarray(data.images[idx]), jnp.asarray(data.groups[idx]))
    m, _ = nnx.merge(gd, st)
    fwd = jax.jit(lambda x: m(x))
    feat = jax.jit(lambda x: m.features(x))

    def predict(x):
        return np.concatenate(
            [
                np.argmax(np.asarray(fwd(jnp.asarray(x[a : a + 1024]))), -1)
                for a in range(0, len(x), 1024)
            ]
        )

    def features(x):
        return np.concatenate(
            [np.asarray(feat(jnp.asarray(x[a : a + 1024]))) for a in range(0, len(x), 1024)]
        )

    class C:  # the classifier interface of diff_semantica.metrics
        pass

    c = C()
    c.predict, c.features = predict, features
    return c


def _stage(name: str, t0: float) -> None:
    import sys

    print(f"[{time.perf_counter() - t0:7.1f} s] {name}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument(
        "--dry-run", action="store_true", help="tiny sizes on CPU to validate the script"
    )
    ap.add_argument("--n-train", type=int, default=200_000, help="shapes10 training images")
    ap.add_argument(
        "--encoder-s", type=float, default=60.0, help="SimCLR seconds (sets the step count)"
    )
    ap.add_argument("--train-s", type=float, default=180.0, help="main training seconds")
    ap.add_argument(
        "--short-s", type=float, default=60.0, help="filtered / unfiltered runs, seconds each"
    )
    args = ap.parse_args()
    dry = args.dry_run
    n_train = 400 if dry else args.n_train
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res: dict = {"device": str(jax.devices()[0]), "dry_run": dry}
    train = shapes10(n_train, seed=0)
    test = shapes10(100 if dry else 1000, seed=1)
    _stage("data", t_start)
    clf = train_classifier(train, 5 if dry else 1500)
    res["classifier_test_accuracy"] = float(np.mean(clf.predict(test.images) == test.groups))
    _stage("classifier", t_start)
    # 1. encoders
    pca = PCAEncoder.fit(train.images[:20_000], 64, patch=8)
    rnd = RandomProjectionEncoder((32, 32, 3), 64, seed=0)
    conv = ConvEncoder((32, 32, 3), dim=64)
    # SimCLR for a fixed step count sized to about --encoder-s seconds by a timing probe
    t0 = time.perf_counter()
    train_encoder(
        ConvEncoder((32, 32, 3), dim=64), train.images, kind="simclr", steps=2 if dry else 20
    )
    per_step = (time.perf_counter() - t0) / (2 if dry else 20)
    enc_steps = 2 if dry else max(20, int(args.encoder_s / per_step))
    conv = train_encoder(conv, train.images, kind="simclr", steps=enc_steps)
    res["encoders"] = {
        "simclr_steps": enc_steps,
        "pca_tokens": pca.num_tokens,
        "random_tokens": rnd.num_tokens,
        "simclr_tokens": conv.num_tokens,
    }
    _stage("encoders", t_start)

    # 2. main run
    def run_for(seconds: float, pairs_cfg, name: str):
        cfg = SemanticaConfig.for_shapes(conv)
        bb = cfg.backbone_config().replace(compute_dtype="bfloat16")
        cfg = cfg.replace(backbone=bb.to_dict())
        batch = 8 if dry else 256
        # steps from a timing probe: the budget is wall time, the run itself a fixed step count
        probe = 2 if dry else 20
        t = time.perf_counter()
        train_semantica(
            cfg,
            train,
            conv,
            pairs_cfg,
            out / f"{name}_probe",
            RunConfig(steps=probe, batch_size=batch, lr=2e-4, warmup_steps=1, checkpoint_every=0),
            progress=False,
        )
        per = (time.perf_counter() - t) / probe
        n = max(2, int(seconds / per))
        tr = train_semantica(
            cfg,
            train,
            conv,
            pairs_cfg,
            out / name,
            RunConfig(
                steps=n,
                batch_size=batch,
                lr=2e-4,
                warmup_steps=min(100, n // 2),
                checkpoint_every=0,
            ),
            progress=not dry,
        )
        return tr, n, per

    tr, n, per = run_for(
        0.1 if dry else args.train_s,
        (PairConfig(pairs_per_epoch=50_000 if not dry else 500), None),
        "clean",
    )
    loader = PairLoader(
        build_pairs(train, conv, PairConfig(pairs_per_epoch=500), None)[0], train, 8 if dry else 256
    )
    b = next(loader)
    model = tr.model()
    from diff_semantica import semantica_loss

    gd, st = nnx.split(model)

    def lossf(st, batch):
        return semantica_loss(nnx.merge(gd, st), batch, jax.random.key(0))[0]

    cost = (
        jax.jit(jax.grad(lossf))
        .lower(st, {k: jnp.asarray(v) for k, v in b.items()})
        .compile()
        .cost_analysis()
    )
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    res["train"] = {
        "steps": n,
        "s_per_step": per,
        "tflops_per_s": flops / per / 1e12,
        "of_h200_datasheet_990": flops / per / 1e12 / 990,
        "of_plain_jax_490": flops / per / 1e12 / 490,
    }
    _stage("main run", t_start)
    # 3. evaluation
    ref = reference_pair_rmse(test)
    cond = test.subset(np.arange(20 if dry else 300))
    ev = {}
    for g in (1.0, 2.0, 4.0):
        s = sample_variations(
            tr.ema_model(), cond.images, n_per_image=4, guidance=g, steps=4 if dry else 50
        )
        ev[str(g)] = {
            "agreement": class_agreement(s, cond.groups, clf),
            "copy_distance": copy_distance(s, cond.images, ref),
            "copy_rate": copy_rate(s, cond.images, cond.groups, test),
            "diversity": diversity(s, ref),
            "fd_shapes": set_fd(s, cond.images, clf.features),
        }
        if g == 2.0:
            save_variation_grid(out / "grid.png", cond.images[:8], s[:8])
    sub = test.of_groups((0, 1, 2)).subset(np.arange(10 if dry else 150))
    s = sample_variations(
        tr.ema_model(), sub.images, n_per_image=4, guidance=2.0, steps=4 if dry else 50
    )
    ev["subset_tv_2"] = subset_tv(s, clf, (0, 1, 2))
    res["eval"] = ev
    _stage("evaluation", t_start)
    short = {}
    for name, fc in (("unfiltered60", None), ("filtered60", FilterConfig("p60", 0.98))):
        t2, _, _ = run_for(
            0.1 if dry else args.short_s,
            (PairConfig(corrupt_fraction=0.6, pairs_per_epoch=500 if dry else 50_000), fc),
            name,
        )
        s = sample_variations(
            t2.ema_model(), cond.images, n_per_image=2, guidance=2.0, steps=4 if dry else 50
        )
        short[name] = class_agreement(s, cond.groups, clf)
    res["filtering"] = short
    res["wall_s"] = time.perf_counter() - t_start
    atomic_write(out / "results.json", json.dumps(res, indent=2))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
