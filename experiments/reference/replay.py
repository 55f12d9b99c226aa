#!/usr/bin/env python3
"""Replays ebda training steps in PyTorch, step by step, from ebda's own state.

ebda writes, with `ebda train --trace DIR`, every step's input batches, the
schedule values (lr, λ), the dropout generator's state before the step and
the step's statistics; with `train.checkpoint_every=1` its checkpoints hold
the parameters and optimizer state after every step. This script takes the
state after step k from checkpoint k, rebuilds step k+1's dropout masks from
the generator state (PCG-64 MCG, as `ebda_nn::Rng`), performs step k+1 with
the PyTorch reference's formulas (`../shared/reference/torch_da.py`: LeNet,
DANN's discriminator with gradient reversal, the EBDA critic step then the
feature step through the updated critic, SGD / Adam as torch.optim), and
compares the losses with ebda's and the parameters with checkpoint k+1.

Mode `step` (default) restarts from ebda's state before every step, so an
error does not accumulate: a formula that differs shows at the first step
as a parameter update that disagrees beyond float rounding. Mode `free`
starts from checkpoint `--from` and lets PyTorch run on its own with ebda's
batches and masks, to see how fast float rounding grows.

Usage (U2M DANN, 20 steps):
  ebda train --config experiments/digits/U2M-5k.json --set method=dann \\
      --set train.eval_every=1 --set train.checkpoint_every=1 \\
      --set train.keep_checkpoints=100 --stop-after 21 --out RUN --trace RUN/trace
  python experiments/reference/replay.py --run RUN [--mode step|free] [--json out.json]

Methods: source-only, dann, ebda with the LeNet backbone, a linear classifier,
SGD (momentum, weight decay) for the model and Adam for the critic — the
reference's settings. Needs torch, numpy and safetensors.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

# The gradient reversal of the step benchmark (same directory).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_steps import Reverse as GradReverse  # noqa: E402

MASK64 = (1 << 64) - 1
MASK128 = (1 << 128) - 1
PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


class Pcg64Mcg:
    """rand_pcg's Mcg128Xsl64: the generator behind ebda's dropout masks."""

    def __init__(self, state):
        self.state = state

    def next_u64(self):
        self.state = (self.state * PCG_MULT) & MASK128
        rot = self.state >> 122
        xsl = ((self.state >> 64) ^ self.state) & MASK64
        return ((xsl >> rot) | (xsl << (64 - rot))) & MASK64

    def mask(self, shape, p):
        """ebda_nn's dropout mask: element i dropped when draw i's top 53
        bits, as k·2⁻⁵³, fall below p; survivors scaled by 1/(1 − p)."""
        n = int(np.prod(shape))
        threshold = math.ceil(p * (1 << 53))
        keep = np.float32(1.0 / (1.0 - p))
        out = np.empty(n, np.float32)
        for i in range(n):
            out[i] = 0.0 if (self.next_u64() >> 11) < threshold else keep
        return torch.from_numpy(out.reshape(shape))


def load_checkpoint(run, it):
    d = os.path.join(run, "checkpoints", f"iter-{it:08d}")
    params = {}
    for name in os.listdir(d):
        if name.endswith(".safetensors") and not name.endswith("optim.safetensors"):
            params.update({k: torch.from_numpy(v.copy()) for k, v in load_file(os.path.join(d, name)).items()})
    optim = {}
    for name in os.listdir(d):
        if name.endswith("optim.safetensors"):
            optim[name[: -len(".safetensors")]] = {
                k: torch.from_numpy(v.copy()) for k, v in load_file(os.path.join(d, name)).items()
            }
    with open(os.path.join(d, "state.json")) as f:
        state = json.load(f)
    return params, optim, state


class Model:
    """The reference's networks over a dict of named parameters (ebda's names)."""

    def __init__(self, params, cfg):
        self.p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        self.cfg = cfg

    def features(self, x, rng):
        p = self.p
        b = x.shape[0]
        h = F.conv2d(x, p["features.backbone.conv1.weight"], p["features.backbone.conv1.bias"])
        h = F.relu(F.max_pool2d(h, 2))
        h = F.conv2d(h, p["features.backbone.conv2.weight"], p["features.backbone.conv2.bias"])
        h = h * rng.mask((b, 50, 1, 1), 0.5)  # Dropout2d(0.5)
        h = F.relu(F.max_pool2d(h, 2))
        h = F.relu(F.linear(h.flatten(1), p["features.backbone.fc.weight"], p["features.backbone.fc.bias"]))
        return h * rng.mask(tuple(h.shape), self.cfg["dropout"])

    def classify(self, f):
        return F.linear(f, self.p["classifier.layers.0.weight"], self.p["classifier.layers.0.bias"])

    def discriminate(self, f, rng):
        p = self.p
        layers = sorted({k.split(".")[2] for k in p if k.startswith("discriminator.layers.")}, key=int)
        for i, layer in enumerate(layers):
            f = F.linear(f, p[f"discriminator.layers.{layer}.weight"], p[f"discriminator.layers.{layer}.bias"])
            if i + 1 < len(layers):
                f = F.relu(f)
                f = f * rng.mask(tuple(f.shape), self.cfg["disc_dropout"])
        return f.squeeze(1)

    def energy(self, f, critic, eps):
        h = F.relu(F.linear(f, critic["critic.encoder.0.weight"], critic["critic.encoder.0.bias"]))
        r = F.linear(h, critic["critic.decoder.0.weight"], critic["critic.decoder.0.bias"])
        return ((r - f) ** 2).sum(1) / ((f ** 2).sum(1) + eps), h


def pull_away(h):
    """torch_da.py's pull-away term (normalised by ‖h‖ + 1e-8)."""
    n = h.size(0)
    hn = h / (h.norm(dim=1, keepdim=True) + 1e-8)
    s = (hn @ hn.t()) ** 2
    return (s.sum() - s.diagonal().sum()) / (n * (n - 1))


def sgd(params, grads, bufs, lr, momentum, wd):
    """torch.optim.SGD (dampening 0, no Nesterov) on named tensors."""
    out = {}
    for k, theta in params.items():
        g = grads[k] + wd * theta
        b = g if k not in bufs else momentum * bufs[k] + g
        bufs[k] = b
        out[k] = theta - lr * b
    return out


def adam(params, grads, m, v, steps, lr, betas, eps):
    """torch.optim.Adam on named tensors."""
    out = {}
    for k, theta in params.items():
        g = grads[k]
        m[k] = g * (1 - betas[0]) if k not in m else betas[0] * m[k] + (1 - betas[0]) * g
        v[k] = g * g * (1 - betas[1]) if k not in v else betas[1] * v[k] + (1 - betas[1]) * g * g
        t = steps.get(k, 0) + 1
        steps[k] = t
        mh = m[k] / (1 - betas[0] ** t)
        vh = v[k] / (1 - betas[1] ** t)
        out[k] = theta - lr * mh / (vh.sqrt() + eps)
    return out


def one_step(params, optim, steps, batch, rec, cfg):
    """Step `rec["iteration"]` from `params` (ebda's names); returns the new
    parameters, the optimizer state and the step's losses."""
    method = cfg["method"]
    rng = Pcg64Mcg(int(rec["rng_before"]["state"]))
    model_keys = [k for k in params if not k.startswith("critic.")]
    model = Model({k: params[k] for k in model_keys}, cfg)
    xs, ys = batch["source.inputs"], batch["source.labels"].long()
    losses = {}
    new = dict(params)
    if method == "source-only":
        f = model.features(xs, rng)
        loss = F.cross_entropy(model.classify(f), ys)
        losses.update(loss=loss.item(), ce=loss.item())
    else:
        xt = batch["target.inputs"]
        bs = xs.shape[0]
        f = model.features(torch.cat([xs, xt]), rng)
        fs, ft = f[:bs], f[bs:]
        ce = F.cross_entropy(model.classify(fs), ys)
        losses["ce"] = ce.item()
        if method == "dann":
            d = model.discriminate(GradReverse.apply(f, rec["lambda"]), rng)
            y = torch.cat([torch.ones(bs), torch.zeros(ft.shape[0])])
            dloss = F.binary_cross_entropy_with_logits(d, y)
            loss = ce + dloss
            losses["domain_loss"] = dloss.item()
        elif method == "ebda":
            crit = {k: params[k].clone().requires_grad_(True) for k in params if k.startswith("critic.")}
            es, _ = model.energy(fs.detach(), crit, cfg["eps"])
            et, _ = model.energy(ft.detach(), crit, cfg["eps"])
            lc = es.mean() + F.relu(cfg["margin"] - et).mean()
            grads = dict(zip(crit, torch.autograd.grad(lc, list(crit.values()))))
            o = optim["critic_optim"]
            new_crit = adam(
                {k: v.detach() for k, v in crit.items()}, grads, o["first"], o["second"], steps["critic_optim"],
                cfg["critic_lr"], (0.9, 0.999), 1e-8,
            )
            new.update(new_crit)
            et2, ht = model.energy(ft, new_crit, cfg["eps"])
            pt = pull_away(ht)
            align = et2.mean() + cfg["pull_away"] * pt
            loss = ce + rec["lambda"] * align
            losses.update(critic_loss=lc.item(), align_energy=et2.mean().item(), pull_away=pt.item())
        else:
            sys.exit(f"replay.py: method {method!r} is not replayed (source-only, dann, ebda)")
        losses["loss"] = loss.item()
    keys = list(model.p)
    grads = dict(zip(keys, torch.autograd.grad(loss, [model.p[k] for k in keys])))
    new.update(sgd({k: params[k] for k in keys}, grads, optim["optim"]["first"], rec["lr"], 0.9, cfg["wd"]))
    return new, losses


def optim_state(optim, state):
    out = {}
    for name, tensors in optim.items():
        out[name] = {"first": {}, "second": {}}
        for k, v in tensors.items():
            kind, var = k.split(".", 1)
            out[name][kind][var] = v
    steps = {name: dict(counts) for name, counts in state["optimizer_steps"].items()}
    return out, steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="ebda run directory (checkpoints every step)")
    ap.add_argument("--trace", help="trace directory (default RUN/trace)")
    ap.add_argument("--mode", choices=["step", "free"], default="step")
    ap.add_argument("--from", dest="start", type=int, default=1, help="first checkpoint")
    ap.add_argument("--json", help="write the per-step comparison here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    trace = a.trace or os.path.join(a.run, "trace")
    with open(os.path.join(a.run, "config.json")) as f:
        config = json.load(f)
    method = config["method"] if isinstance(config["method"], str) else next(iter(config["method"]))
    msec = config["method"].get(method, {}) if isinstance(config["method"], dict) else {}
    critic = msec.get("critic", {})
    backbone = config["model"]["features"]["backbone"]
    if backbone != "lenet" and not (isinstance(backbone, dict) and "lenet" in backbone):
        sys.exit("replay.py: only the lenet backbone is replayed")
    feat = backbone["lenet"] if isinstance(backbone, dict) else {}
    if config["model"]["classifier"].get("hidden") or config["model"]["features"].get("bottleneck"):
        sys.exit("replay.py: only a linear classifier without a bottleneck is replayed")
    cfg = {
        "method": method,
        "dropout": feat.get("dropout", 0.5),
        "disc_dropout": msec.get("discriminator", {}).get("dropout", 0.5),
        "margin": critic.get("margin", 1.0),
        "pull_away": critic.get("pull_away_weight", 0.1),
        "eps": critic.get("eps", 1e-6),
        "critic_lr": msec.get("critic_optim", {}).get("lr", 1e-3),
        "wd": config["optim"]["weight_decay"],
    }
    records = {}
    with open(os.path.join(trace, "steps.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            records[r["iteration"]] = r
    ckpts = sorted(
        int(n.split("-")[1]) for n in os.listdir(os.path.join(a.run, "checkpoints")) if n.startswith("iter-")
    )
    rows = []
    params, optim, state = load_checkpoint(a.run, a.start)
    opt, steps = optim_state(optim, state)
    it = a.start
    print(f"{'step':>5} {'loss ebda':>12} {'loss torch':>12} {'|Δloss|':>9}  worst parameter (|θ_torch − θ_ebda| / |θ_k+1 − θ_k|)")
    while it + 1 in ckpts and it in records:
        rec = records[it]
        batch = {k: torch.from_numpy(v.copy()) for k, v in load_file(os.path.join(trace, f"step-{it:08d}.safetensors")).items()}
        new, losses = one_step(params, opt, steps, batch, rec, cfg)
        ebda_next, optim_next, state_next = load_checkpoint(a.run, it + 1)
        worst, worst_name = 0.0, ""
        per = {}
        for k, v in ebda_next.items():
            upd = (v - params[k]).abs().max().item()
            err = (new[k].detach() - v).abs().max().item()
            rel = err / max(upd, 1e-30)
            per[k] = {"max_abs_err": err, "max_abs_update": upd, "relative": rel}
            if rel > worst:
                worst, worst_name = rel, k
        le = rec["stats"].get("loss", rec["stats"].get("ce"))
        lt = losses.get("loss", losses.get("ce"))
        print(f"{it:5d} {le:12.6f} {lt:12.6f} {abs(le - lt):9.2e}  {worst_name} {worst:.2e}")
        rows.append({"iteration": it, "ebda": rec["stats"], "torch": losses, "params": per, "worst": [worst_name, worst]})
        if a.mode == "step":
            params = ebda_next
            opt, steps = optim_state(optim_next, state_next)
        else:
            params = {k: v.detach() for k, v in new.items()}  # opt, steps advanced in place
        it += 1
    if not rows:
        sys.exit("replay.py: no step to replay (need checkpoints k and k+1 and trace step k)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
