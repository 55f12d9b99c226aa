#!/usr/bin/env python3
"""The training steps `ebda bench` times, written in PyTorch, to run beside it.

Same models, same steps, same protocol as `ebda bench` (crates/ebda-train/src/bench.rs)
with ebda's default config:

- LeNet: conv(1→20, 5) → max-pool 2 → ReLU → conv(20→50, 5) → Dropout2d(0.5)
  → max-pool 2 → ReLU → flatten 800 → fc 500 → ReLU → Dropout(0.5);
  classifier Linear(500, 10); cross-entropy.
- source-only: one SGD step (lr 0.01, momentum 0.9, weight decay 5e-4) on a
  source batch of 64.
- DANN: one extractor pass over [x_s; x_t] (128 images), gradient reversal,
  discriminator 500 → 500 → 500 → 1 (ReLU, Dropout(0.5)), binary
  cross-entropy on the 128 logits (source 1, target 0), one SGD step.
- EBDA: one extractor pass over [x_s; x_t]; critic step: autoencoder
  500 → 256 (ReLU) → 500, relative energy Σ(r − f)² / (Σf² + ε) of the
  detached source and target features (two passes of 64), loss
  mean E_s + mean [m − E_t]⁺, one Adam step (lr 1e-3); feature step through
  the frozen critic: CE + λ·(mean E_t + 0.1·PT(codes)), one SGD step.
- inference: extractor + classifier in evaluation mode, batch 256.

Protocol: a pool of 8 pre-generated batch pairs (uniform [0, 1) pixels,
uniform labels) cycled so no data generation is timed; per repeat fresh
models from a fixed seed, `warmup` untimed steps, `steps` timed ones;
the figure is the median over repeats.

Usage:
  python torch_steps.py --threads 1,2 [--steps 100] [--repeats 3] [--json out.json]
  python torch_steps.py --threads 2 --compare ebda-t2.json   # ratio table against `ebda bench --json`

Time only on a quiet machine (no build running), ebda and this script one
after the other.
"""
import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 64
CLASSES = 10
POOL = 8
SEED = 0
LAMBDA = 0.5   # ebda bench: StepParams at progress 0.5
MARGIN = 1.0
PULL_AWAY = 0.1
EPS = 1e-6


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.spatial = nn.Dropout2d(0.5)
        self.fc = nn.Linear(800, 500)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.spatial(self.conv2(x)), 2))
        return self.dropout(F.relu(self.fc(x.flatten(1))))


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lam * g, None


def discriminator():
    return nn.Sequential(
        nn.Linear(500, 500), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(500, 500), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(500, 1),
    )


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(500, 256)
        self.dec = nn.Linear(256, 500)

    def forward(self, f):
        code = F.relu(self.enc(f))
        r = self.dec(code)
        energy = ((r - f) ** 2).sum(1) / ((f ** 2).sum(1) + EPS)
        return energy, code


def pull_away(code, eps=1e-8):
    n = code.shape[0]
    unit = code / torch.sqrt((code ** 2).sum(1, keepdim=True) + eps * eps)
    cos2 = (unit @ unit.t()) ** 2
    off = 1.0 - torch.eye(n)
    return (cos2 * off).sum() / (n * (n - 1))


def sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)


class SourceOnly:
    images = BATCH

    def __init__(self):
        self.f, self.c = LeNet().train(), nn.Linear(500, CLASSES).train()
        self.opt = sgd(list(self.f.parameters()) + list(self.c.parameters()))

    def step(self, xs, ys, xt):
        loss = F.cross_entropy(self.c(self.f(xs)), ys)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


class Dann:
    images = 2 * BATCH

    def __init__(self):
        self.f, self.c, self.d = LeNet().train(), nn.Linear(500, CLASSES).train(), discriminator().train()
        params = [p for m in (self.f, self.c, self.d) for p in m.parameters()]
        self.opt = sgd(params)
        self.dom = torch.cat([torch.ones(BATCH), torch.zeros(BATCH)])

    def step(self, xs, ys, xt):
        f = self.f(torch.cat([xs, xt]))
        ce = F.cross_entropy(self.c(f[:BATCH]), ys)
        d = self.d(Reverse.apply(f, LAMBDA)).squeeze(1)
        loss = ce + F.binary_cross_entropy_with_logits(d, self.dom)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


class Ebda:
    images = 2 * BATCH

    def __init__(self):
        self.f, self.c, self.a = LeNet().train(), nn.Linear(500, CLASSES).train(), Critic().train()
        self.opt = sgd(list(self.f.parameters()) + list(self.c.parameters()))
        self.critic_opt = torch.optim.Adam(self.a.parameters(), lr=1e-3)

    def step(self, xs, ys, xt):
        f = self.f(torch.cat([xs, xt]))
        fs, ft = f[:BATCH], f[BATCH:]
        ce = F.cross_entropy(self.c(fs), ys)
        e_s, _ = self.a(fs.detach())
        e_t, _ = self.a(ft.detach())
        critic_loss = e_s.mean() + torch.where(e_t < MARGIN, MARGIN - e_t, 0.0).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        for p in self.a.parameters():
            p.requires_grad_(False)
        e, code = self.a(ft)
        loss = ce + LAMBDA * (e.mean() + PULL_AWAY * pull_away(code))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        for p in self.a.parameters():
            p.requires_grad_(True)
        return loss.detach()


def batches(gen):
    return [
        (torch.rand(BATCH, 1, 28, 28, generator=gen),
         torch.randint(0, CLASSES, (BATCH,), generator=gen),
         torch.rand(BATCH, 1, 28, 28, generator=gen))
        for _ in range(POOL)
    ]


def time_train(cls, warmup, steps):
    torch.manual_seed(SEED)
    pool = batches(torch.Generator().manual_seed(SEED + 1))
    model = cls()
    for i in range(warmup):
        model.step(*pool[i % POOL])
    t0 = time.perf_counter()
    for i in range(steps):
        loss = model.step(*pool[i % POOL])
    value = float(loss)
    elapsed = time.perf_counter() - t0
    if value != value:
        raise SystemExit(f"{cls.__name__}: the loss is NaN")
    return steps / elapsed


def time_infer(batch, warmup, steps):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 2)
    f, c = LeNet().eval(), nn.Linear(500, CLASSES).eval()
    xs = [torch.rand(batch, 1, 28, 28, generator=gen) for _ in range(4)]
    with torch.inference_mode():
        for i in range(warmup):
            c(f(xs[i % 4]))
        t0 = time.perf_counter()
        for i in range(steps):
            out = c(f(xs[i % 4]))
        float(out.sum())
        return steps / (time.perf_counter() - t0)


# `ebda bench` benchmark names.
METHODS = {"source-only": SourceOnly, "dann": Dann, "ebda": Ebda}


def run(threads, args):
    torch.set_num_threads(threads)
    results = {}
    for name in args.methods.split(","):
        cls = METHODS[name]
        per_s = [time_train(cls, args.warmup, args.steps) for _ in range(args.repeats)]
        results[f"train {name} lenet"] = {
            "per_second": per_s,
            "median_per_second": statistics.median(per_s),
            "images_per_step": cls.images,
        }
        print(f"threads {threads}  train {name:<12} {statistics.median(per_s):8.2f} steps/s", flush=True)
    if args.infer_batch > 0:
        per_s = [time_infer(args.infer_batch, args.warmup, args.steps) for _ in range(args.repeats)]
        results[f"infer lenet batch {args.infer_batch}"] = {
            "per_second": per_s,
            "median_per_second": statistics.median(per_s),
            "images_per_step": args.infer_batch,
        }
        med = statistics.median(per_s)
        print(f"threads {threads}  infer batch {args.infer_batch} {med * args.infer_batch:10.0f} images/s", flush=True)
    return results


def compare(ours, theirs_path, threads):
    with open(theirs_path) as fh:
        ebda = json.load(fh)
    rows = ebda["results"] if isinstance(ebda, dict) and "results" in ebda else ebda
    by_name = {r["name"]: r for r in rows}
    print(f"\nebda / PyTorch at {threads} thread(s), median steps (or batches) per second:")
    print(f"| {'benchmark':<28} | {'ebda':>8} | {'PyTorch':>8} | {'ratio':>6} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
    for name, r in ours.items():
        e = by_name.get(name)
        if e is None:
            print(f"| {name:<28} | {'—':>8} | {r['median_per_second']:8.2f} | {'—':>6} |")
            continue
        ratio = e["median_per_second"] / r["median_per_second"]
        print(f"| {name:<28} | {e['median_per_second']:8.2f} | {r['median_per_second']:8.2f} | {ratio:5.2f}× |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--methods", default="source-only,dann,ebda")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--infer-batch", type=int, default=256, help="0 skips inference")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--compare", help="`ebda bench --json` output of the same thread count: print the ratio table")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.compare and len(threads) != 1:
        ap.error("--compare takes one thread count (that of the ebda run)")
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    print(json.dumps(info), flush=True)
    results = {f"threads={t}": run(t, args) for t in threads}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "config": vars(args), "results": results}, fh, indent=1)
    if args.compare:
        compare(results[f"threads={threads[0]}"], args.compare, threads[0])


if __name__ == "__main__":
    main()
