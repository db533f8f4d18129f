#!/usr/bin/python3
"""Learning per step: Tandem's standalone trainer against the same architecture trained
by PyTorch (Debian's python3-torch, 1.13, the LibTorch Tandem links against).

Run it with /usr/bin/python3: python3-torch is installed for Debian's interpreter only
(a pyenv `python3` earlier in PATH cannot import torch). The shebang does this:

    benchmarks/learning_per_step.py          # resnet18, Tandem and PyTorch, seeds 1,2,3, 100 steps
    benchmarks/learning_per_step.py --model cnn --systems torch,torch-torchvision \
        --steps 100 --eval-every 25 --seeds 1,2,3,4,5          # initialisation schemes, paired
    benchmarks/learning_per_step.py --model cnn --systems tandem,torch-tandem --order tandem
    benchmarks/learning_per_step.py --systems tandem,torch --order tandem --steps 50
                                             # PyTorch replicas of Tandem: identical numbers

Both systems train on Fashion-MNIST (gzipped IDX, normalised with mean 0.2860 / std
0.3530) with batch 64, SGD (lr 0.05, momentum 0.9, Nesterov, weight decay 5e-4 on every
parameter), a constant learning rate, cross-entropy, one intra-op thread each, and are
evaluated in eval mode on the first 2 560 test images every --eval-every steps.

Tandem is the real `edge_trainer --standalone`: one "epoch" of --eval-every batches
(data.max_train_batches) per evaluation, with optimizer.schedule none, so its learning
rate is constant and its optimizer state and BatchNorm statistics carry over. Each of its
epochs takes the first batches of a fresh seeded permutation of the training set; the
PyTorch side draws its batches the same way (a fresh torch.randperm per evaluation
interval), so both see the same kind of data stream, not the same samples. With
--order tandem the PyTorch side takes Tandem's exact permutations instead (std::mt19937_64
and the Fisher-Yates of runtime/data/loader.cpp, replicated here), and the same float32
normalisation arithmetic, so its batches are bit-identical to Tandem's.

The PyTorch side is an idiomatic script: nn.Conv2d / nn.BatchNorm2d / nn.Linear with
torch.manual_seed(seed), torch.optim.SGD over model.parameters(). --systems chooses the
initialisation it starts from: `torch` (PyTorch's own module defaults, what nn layers
give you), `torch-torchvision` (torchvision's ResNet scheme: Kaiming-normal fan_out
convolutions, BatchNorm 1/0, Linear default) and `torch-tandem` (Tandem's scheme before
it gave convolutions followed by BatchNorm PyTorch's default: every convolution
Kaiming-normal, drawn exactly as Tandem drew it from run.seed; for cnn, which has no
BatchNorm, it is still Tandem's scheme). With --order tandem, `torch-tandem` reproduces a
Tandem run of cnn (and an old Tandem run of the BatchNorm models), and `torch` one of the
BatchNorm models now, to the last test image and loss digit.
Runs of different systems with the same seed and order see the same batches, so
comparisons between PyTorch initialisations are paired.

Prints one table (test accuracy % per step: median and worst over the seeds, samples/s)
and writes every run to --csv.
"""

import argparse
import csv
import gzip
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tandem_bench  # noqa: E402

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.exit(f"learning_per_step.py: cannot import torch with {sys.executable}; run it with /usr/bin/python3 "
             "(Debian's python3-torch)")

MEAN, STD = 0.2860, 0.3530
CONFIGS = {name: tandem_bench.ROOT / "configs" / f"fashion_mnist_{name}.yaml"
           for name in ("mlp", "cnn", "resnet18", "vgg11", "mobilenetv2")}


# ---------------------------------------------------------------------------------------
# Data


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3])]
    offset = 4 + 4 * len(dims)
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(dims)


def load_fashion_mnist(directory, split):
    prefix = Path(directory) / ("train" if split == "train" else "t10k")
    images = read_idx(f"{prefix}-images-idx3-ubyte.gz").unsqueeze(1)
    labels = read_idx(f"{prefix}-labels-idx1-ubyte.gz").long()
    # The arithmetic of runtime/data/dataset.cpp (x * (1/255) - mean) * (1/std) in float32,
    # so that with --order tandem both systems see bit-identical batches.
    inv_std = 1.0 / torch.tensor([STD], dtype=torch.float32)
    inputs = images.float().mul_(1.0 / 255.0).sub_(torch.tensor([MEAN], dtype=torch.float32)).mul_(inv_std)
    return inputs, labels


# ---------------------------------------------------------------------------------------
# The zoo, in PyTorch (runtime/models/zoo/*.cpp: the same layers in the same order)


def mlp(channels, height, width, classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, 512), nn.ReLU(), nn.Linear(512, 256),
                         nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes))


def cnn(channels, height, width, classes):
    return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), 128), nn.ReLU(),
                         nn.Linear(128, classes))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


def resnet18(channels, height, width, classes):
    layers = [nn.Conv2d(channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for width_ in (64, 128, 256, 512):
        for block in range(2):
            layers.append(BasicBlock(cin, width_, 2 if block == 0 and width_ != 64 else 1))
            cin = width_
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def vgg11(channels, height, width, classes):
    layers, cin, h, w = [], channels, height, width
    for cout, pool in ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True), (512, False),
                       (512, True)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if pool and h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def conv_bn_relu6(cin, cout, kernel, stride, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        body = [conv_bn_relu6(cin, hidden, 1, 1)] if expand != 1 else []
        body += [conv_bn_relu6(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                 nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*body)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenetv2(channels, height, width, classes):
    layers, cin = [conv_bn_relu6(channels, 32, 3, 1)], 32
    for expand, cout, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                                          (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers += [conv_bn_relu6(cin, 1280, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
    return nn.Sequential(*layers)


MODELS = {"mlp": mlp, "cnn": cnn, "resnet18": resnet18, "vgg11": vgg11, "mobilenetv2": mobilenetv2}


def reinitialise(model, scheme, seed):
    """`torch`: PyTorch's module defaults as constructed (after torch.manual_seed(seed)).
    `torch-torchvision`: torchvision's ResNet scheme on top (Kaiming-normal fan_out
    convolutions with bias 0, BatchNorm 1/0, Linear left at its default).
    `torch-tandem`: Tandem's scheme before the BatchNorm fix (README, "Learning per step
    against PyTorch"), drawn exactly as runtime/models/stage_model.cpp drew it (one
    explicit generator seeded with `seed`, in module order: every convolution
    N(0, 2 / (fan_out / groups)) with bias 0, Linear U(+-1/sqrt(fan_in)) for weight then
    bias); Tandem's current scheme for models without BatchNorm."""
    if scheme == "torch":
        return
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                if scheme == "torch-torchvision":
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    fan_out = m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3] / m.groups
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Linear) and scheme == "torch-tandem":
                bound = 1.0 / math.sqrt(m.weight.shape[1])
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()


class MT19937_64:
    """std::mt19937_64, so the PyTorch side can draw Tandem's exact data order."""
    M64 = (1 << 64) - 1

    def __init__(self, seed):
        mt = [seed & self.M64]
        for i in range(1, 312):
            mt.append((6364136223846793005 * (mt[i - 1] ^ (mt[i - 1] >> 62)) + i) & self.M64)
        self.mt, self.i = mt, 312

    def __call__(self):
        mt = self.mt
        if self.i >= 312:
            for k in range(312):
                x = (mt[k] & 0xFFFFFFFF80000000) | (mt[(k + 1) % 312] & 0x7FFFFFFF)
                mt[k] = mt[(k + 156) % 312] ^ (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
            self.i = 0
        y = mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        return y ^ (y >> 43)


def tandem_epoch_order(n, seed, epoch):
    """runtime/data/loader.cpp epochOrder(): Fisher-Yates over mt19937_64 with rejection."""
    m64 = MT19937_64.M64
    rng = MT19937_64(seed ^ ((0x9E3779B97F4A7C15 * (epoch + 1)) & m64))
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        limit = m64 - m64 % (i + 1)
        r = rng()
        while r >= limit:
            r = rng()
        j = r % (i + 1)
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order)


# ---------------------------------------------------------------------------------------
# Runs


def train_torch(args, scheme, seed, train, test):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    inputs, labels = train
    model = MODELS[args.model](1, 28, 28, 10)
    reinitialise(model, scheme, seed)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                          weight_decay=args.weight_decay)
    order_gen = torch.Generator().manual_seed(seed)
    accuracy, train_seconds, step = {}, 0.0, 0
    while step < args.steps:
        # One "epoch" per evaluation interval, as Tandem's runs here.
        if args.order == "tandem":
            perm = tandem_epoch_order(inputs.shape[0], seed, step // args.eval_every)
        else:
            perm = torch.randperm(inputs.shape[0], generator=order_gen)
        model.train()
        start = time.perf_counter()
        for b in range(args.eval_every):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(inputs[idx]), labels[idx])
            loss.backward()
            opt.step()
        train_seconds += time.perf_counter() - start
        step += args.eval_every
        accuracy[step] = evaluate(model, test, args)
    return accuracy, args.steps * args.batch_size / train_seconds


def evaluate(model, test, args):
    model.eval()
    inputs, labels = test
    correct, loss = 0, 0.0
    with torch.no_grad():
        for b in range(0, args.test_images, args.batch_size):
            x, y = inputs[b:b + args.batch_size], labels[b:b + args.batch_size]
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            loss += float(F.cross_entropy(logits, y)) * len(y)
    return correct / args.test_images, loss / args.test_images


def train_tandem(args, seed, out_dir):
    settings = {
        "run.seed": seed, "run.threads": 1, "run.epochs": args.steps // args.eval_every, "run.name": "learning_per_step",
        "model.name": args.model, "data.dataset": "fashion_mnist", "data.path": args.data,
        "data.batch_size": args.batch_size, "data.test_batch_size": args.batch_size,
        "data.max_train_batches": args.eval_every, "data.max_test_batches": args.test_images // args.batch_size,
        "data.shuffle": True, "data.normalize": True,
        "optimizer.name": "sgd", "optimizer.lr": args.lr, "optimizer.momentum": args.momentum,
        "optimizer.nesterov": args.nesterov, "optimizer.weight_decay": args.weight_decay,
        "optimizer.schedule": "{name: none}",  # a constant learning rate
        "checkpoint.enabled": False, "log.level": "warn",
    }
    for item in args.tandem_set:
        key, _, value = item.partition("=")
        settings[key] = value
    result = tandem_bench.run_standalone_bounded(CONFIGS[args.model], settings, out_dir, timeout=args.timeout)
    if result["status"] != "ok":
        raise SystemExit(f"edge_trainer --standalone failed ({result['status']}): {result['error']}")
    summary = result["edge"]
    accuracy = {(i + 1) * args.eval_every: (e["test_accuracy"], e["test_loss"])
                for i, e in enumerate(summary["history"])}
    return accuracy, summary["train_samples_per_second"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    p.add_argument("--systems", default="tandem,torch",
                   help="comma list of tandem, torch, torch-torchvision, torch-tandem (default: tandem,torch)")
    p.add_argument("--seeds", default="1,2,3", help="comma list (default 1,2,3)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--order", choices=("torch", "tandem"), default="torch",
                   help="data order of the PyTorch runs: torch.randperm (default) or Tandem's exact one")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--test-images", type=int, default=2560)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--tandem-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for the Tandem runs (repeatable)")
    p.add_argument("--csv", default="runs/learning_per_step.csv")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per Tandem run")
    p.add_argument("--from-csv", nargs="+", metavar="CSV",
                   help="train nothing: print the table of the runs recorded in these CSV files")
    args = p.parse_args()
    if args.from_csv:
        table_from_csv(args.from_csv)
        return

    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # inherited by edge_trainer
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in ("tandem", "torch", "torch-torchvision", "torch-tandem"):
            p.error(f"unknown system '{s}'")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.steps % args.eval_every or args.steps <= 0:
        p.error("--steps must be a positive multiple of --eval-every")
    if args.test_images % args.batch_size:
        p.error("--test-images must be a multiple of --batch-size (Tandem caps evaluation by batches)")
    if "tandem" in systems and not tandem_bench.EDGE.exists():
        p.error(f"{tandem_bench.EDGE} not built (scripts/build.sh), or set TANDEM_BUILD_DIR")

    train = test = None
    if any(s != "tandem" for s in systems):
        train, test = load_fashion_mnist(args.data, "train"), load_fashion_mnist(args.data, "test")
    rows = []
    csv_path = Path(args.csv)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "system", "seed", "step", "test_accuracy", "test_loss", "samples_per_second"])
        for seed in seeds:
            for system in systems:
                start = time.time()
                if system == "tandem":
                    acc, sps = train_tandem(args, seed, Path(tmp) / f"tandem-{seed}")
                else:
                    acc, sps = train_torch(args, system, seed, train, test)
                rows.append((system, seed, acc, sps))
                for step, a in sorted(acc.items()):
                    writer.writerow([args.model, system, seed, step, f"{a[0]:.4f}", f"{a[1]:.4f}", f"{sps:.1f}"])
                f.flush()
                print(f"{system:18} seed {seed}: " + " ".join(f"{s}:{100 * a[0]:.1f}" for s, a in sorted(acc.items())) +
                      f"  {sps:.1f} samples/s  ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)

    print(f"{args.model}, Fashion-MNIST, batch {args.batch_size}, SGD lr {args.lr} momentum {args.momentum} "
          f"nesterov {args.nesterov} wd {args.weight_decay}, one thread, seeds {args.seeds}, "
          f"test accuracy on the first {args.test_images} test images")
    print(summary_table(rows, systems))


def summary_table(rows, systems):
    """rows: (system, seed, {step: (accuracy, loss)}, samples/s)."""
    steps = sorted(set.intersection(*(set(r[2]) for r in rows)))
    header = ["system", "seeds"] + [f"step {s}: median / worst %" for s in steps] + ["samples/s (median)"]
    table = []
    for system in systems:
        mine = [r for r in rows if r[0] == system]
        if not mine:
            continue
        cells = [system, ",".join(str(r[1]) for r in mine)]
        for s in steps:
            values = [100 * r[2][s][0] for r in mine]
            cells.append(f"{statistics.median(values):.1f} / {min(values):.1f}")
        cells.append(f"{statistics.median(r[3] for r in mine):.1f}")
        table.append(cells)
    return tandem_bench.markdown_table(header, table)


def table_from_csv(paths):
    """The table of runs recorded in CSV files (runs split over several invocations)."""
    runs, order = {}, []
    for path in paths:
        with open(path) as f:
            for r in csv.DictReader(f):
                key = (r["model"], r["system"], int(r["seed"]))
                if key not in runs:
                    runs[key] = (key[1], key[2], {}, float(r["samples_per_second"]))
                    if key[1] not in order:
                        order.append(key[1])
                runs[key][2][int(r["step"])] = (float(r["test_accuracy"]), float(r.get("test_loss") or "nan"))
    models = sorted({k[0] for k in runs})
    for model in models:
        print(model)
        print(summary_table([v for k, v in runs.items() if k[0] == model], order))

if __name__ == "__main__":
    main()
