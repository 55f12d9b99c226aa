"""torchvision ResNet reference values and timings for ebda's ResNet.

ImageNet weights cannot be downloaded on every machine, so ebda's ResNet is
checked against torchvision on seeded random weights: this script builds a
torchvision ResNet, perturbs its BatchNorm parameters and running statistics
(so eval mode is not the identity), saves its `state_dict` with `torch.save`
(zip format, `num_batches_tracked` included) and, for fixed inputs:

- `eval.features`: pooled features in eval mode;
- `train.features`: pooled features in train mode (batch statistics);
- `running.<name>`: every BN running mean / variance after that one
  train-mode forward (momentum 0.1, unbiased variance);
- `grad.<name>`: the gradient of `sum(train.features * weights)` with
  respect to every parameter.

ebda loads the `.pth` and compares all of them
(`crates/ebda-features/tests/resnet_reference.rs`).

    pip install torch torchvision
    # the small fixture committed for CI (ResNet-50 and -18 layouts, widths / 32)
    python experiments/reference/torch_resnet.py fixture crates/ebda-features/tests/fixtures/resnet
    # the full ResNet-50 at 224×224 (≈ 200 MB; compared when EBDA_RESNET_REFERENCE names the folder)
    python experiments/reference/torch_resnet.py full /tmp/resnet50-ref [--dtype float64]
    # torchvision's parameter names and shapes (committed text fixtures)
    python experiments/reference/torch_resnet.py names crates/ebda-features/tests/fixtures/resnet
    # CPU timings to set beside `ebda bench --arch resnet50`
    python experiments/reference/torch_resnet.py bench --threads 2
"""

import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import ResNet, BasicBlock, Bottleneck

LAYOUTS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}


class NarrowResNet(ResNet):
    """torchvision's ResNet with every stage's width divided by `divisor`
    (the stem keeps 64 channels): the same modules and forward, smaller."""

    def __init__(self, block, layers, divisor):
        self._divisor = divisor
        super().__init__(block, layers)
        self.fc = nn.Identity()

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, max(planes // self._divisor, 1), blocks, stride, dilate)


def build(depth, divisor, seed):
    torch.manual_seed(seed)
    block, layers = LAYOUTS[depth]
    if divisor == 1:
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        model.fc = nn.Identity()
    else:
        model = NarrowResNet(block, layers, divisor)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(7)
    return model


def state_dict_without_fc(model):
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def reference(model, batch, size, seed, out_dir, name, dtype, grads=None):
    """Saves the f32 `state_dict`, then computes every reference value in
    `dtype` (the f32 weights are exact in f64). `grads` limits the saved
    gradients to parameters whose names start with one of its prefixes
    (to keep committed fixtures small); None saves all."""
    os.makedirs(out_dir, exist_ok=True)
    torch.save(state_dict_without_fc(model), os.path.join(out_dir, f"{name}.pth"))
    model = model.to(dtype)
    g = torch.Generator().manual_seed(seed + 2)
    x = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(dtype)
    expected = {"input": x}
    model.eval()
    with torch.no_grad():
        expected["eval.features"] = model(x)
    model.train()
    f = model(x)
    w = torch.randn(f.shape, generator=g).to(dtype)
    expected["train.features"] = f.detach().clone()
    expected["loss_weights"] = w
    (f * w).sum().backward()
    for k, v in model.named_buffers():
        if k.endswith("running_mean") or k.endswith("running_var"):
            expected[f"running.{k}"] = v.detach().clone()
    for k, p in model.named_parameters():
        keep = grads is None or any(k.startswith(g) for g in grads)
        if p.grad is not None and not k.startswith("fc.") and keep:
            expected[f"grad.{k}"] = p.grad.detach().clone()
    torch.save(expected, os.path.join(out_dir, f"{name}.expected.pth"))
    print(f"{name}: {len(expected)} tensors, features {tuple(f.shape)}, {dtype}")


def names(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for depth in LAYOUTS:
        model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        lines = [
            f"{k} {'x'.join(str(d) for d in v.shape)}"
            for k, v in model.state_dict().items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
        ]
        with open(os.path.join(out_dir, f"resnet{depth}.names.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        print(f"resnet{depth}: {len(lines)} variables")


def timed(fn, warmup, steps, repeats):
    rates = []
    for _ in range(repeats):
        for _ in range(warmup):
            fn()
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        rates.append(steps / (time.perf_counter() - t))
    rates.sort()
    return rates[len(rates) // 2]


def bench(args):
    """Inference at the given batches and one DANN training step
    (ResNet-50 + bottleneck 256 + BN + ReLU, linear head, 1024-1024
    discriminator; batch B source + B target; SGD momentum 0.9), as
    `ebda bench --arch resnet50 --methods dann` times it."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"threads": args.threads, "torch": torch.__version__, "results": []}
    model = torchvision.models.resnet50(weights=None)
    model.fc = nn.Identity()
    for b in args.infer_batch:
        model.eval()
        x = torch.rand(b, 3, 224, 224)

        def infer():
            with torch.no_grad():
                model(x)

        r = timed(infer, args.warmup, args.steps, args.repeats)
        out["results"].append({"name": f"resnet50 infer b{b}", "per_second": r, "images_per_second": r * b})
        print(f"resnet50 infer b{b}: {r * b:.1f} images/s")
    if args.steps_train == 0:
        return finish(out, args)
    model.train()
    bottleneck = nn.Sequential(nn.Linear(2048, 256), nn.BatchNorm1d(256), nn.ReLU())
    head = nn.Linear(256, 31)
    disc = nn.Sequential(
        nn.Linear(256, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
        nn.Linear(1024, 1),
    )
    params = [
        {"params": model.parameters(), "lr": 0.001},
        {"params": list(bottleneck.parameters()) + list(head.parameters()) + list(disc.parameters())},
    ]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-3, nesterov=True)
    b = args.batch
    xs, xt = torch.rand(b, 3, 224, 224), torch.rand(b, 3, 224, 224)
    ys = torch.randint(0, 31, (b,))
    dom = torch.cat([torch.ones(b, 1), torch.zeros(b, 1)])

    def step():
        f = bottleneck(model(torch.cat([xs, xt])))
        loss = F.cross_entropy(head(f[:b]), ys)
        # gradient reversal as a detached difference (λ = 0.5)
        fr = f.detach() + (f - f.detach()) * -0.5
        loss = loss + F.binary_cross_entropy_with_logits(disc(fr), dom)
        opt.zero_grad()
        loss.backward()
        opt.step()

    r = timed(step, args.warmup_train, args.steps_train, args.repeats)
    out["results"].append({"name": f"resnet50 dann b{b}+{b}", "per_second": r, "images_per_second": r * 2 * b})
    print(f"resnet50 dann b{b}+{b}: {r:.3f} steps/s, {r * 2 * b:.1f} images/s")
    finish(out, args)


def finish(out, args):
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("out")
    u = sub.add_parser("full")
    u.add_argument("out")
    u.add_argument("--batch", type=int, default=4)
    u.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    n = sub.add_parser("names")
    n.add_argument("out")
    b = sub.add_parser("bench")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--infer-batch", type=int, nargs="+", default=[32, 64])
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--steps", type=int, default=3)
    b.add_argument("--warmup-train", type=int, default=1)
    b.add_argument("--steps-train", type=int, default=2, help="0 skips the training step")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json")
    args = p.parse_args()
    torch.use_deterministic_algorithms(True)
    if args.cmd == "fixture":
        # f64: at widths / 16 and 64×64 inputs, train-mode BN over 8 values per
        # channel in layer4 makes f32 gradients ill-conditioned (PyTorch's own
        # f32 and f64 gradients differ by up to 9 %), which would hide bugs.
        # Gradients of the stem, every stage's first block (stride, downsample)
        # and the last block: every kind of layer, under 500 kB per file.
        grads = ["conv1.", "bn1.", "layer1.0.", "layer2.0.", "layer3.0.", "layer4.0."]
        reference(build(50, 32, 0), 2, 64, 0, args.out, "resnet50_div32", torch.float64,
                  grads + ["layer4.2."])
        reference(build(18, 32, 1), 2, 64, 1, args.out, "resnet18_div32", torch.float64,
                  grads + ["layer4.1."])
    elif args.cmd == "full":
        dtype = getattr(torch, args.dtype)
        reference(build(50, 1, 0), args.batch, 224, 0, args.out, "resnet50", dtype)
    elif args.cmd == "names":
        names(args.out)
    else:
        bench(args)


if __name__ == "__main__":
    main()
