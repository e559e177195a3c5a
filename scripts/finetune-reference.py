#!/usr/bin/python3
"""PyTorch reference for MlNetFinetune's fine-tuning (issue 12), independent of the C# code.

It reads the same pretrained ResNet18 ONNX file, executes its nodes with PyTorch ops (asymmetric pads by F.pad, the
preprocessing's mean image resampled by area averaging as the C# backbone does), runs batch norm in eval mode,
and trains the top stages plus a softmax head with PyTorch autograd and torch.optim.SGD: each convolution's weight
and its batch norm's shift train, the batch norm's scale and statistics stay frozen (eval mode), weight decay applies
to weights only.

  fixture  writes the small JSON fixture the C# test PyTorchReferenceTests reads (two SGD steps on four real
           Fashion-MNIST images at 64 px, stages 3-4 and the head trained); the test suite itself never runs Python.
  bench    times PyTorch's usual fine-tuning recipe (frozen part recomputed every step, batch norm frozen) on pixel
           tensors written by the C# benchmark, and prints one JSON line.

Debian: apt-get install python3-torch python3-onnx; run with /usr/bin/python3.
"""
import argparse
import base64
import gzip
import json
import math
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

NETWORK = "DnnImageModels/ResNet18Onnx/ResNet18.onnx"
PREPROCESS = "DnnImageModels/ResNetPrepOnnx/ResNetPreprocess.onnx"
STAGE_OUTPUTS = ["ReLU283_Output_0", "ReLU315_Output_0", "ReLU347_Output_0", "ReLU393_Output_0"]
STAGE_CHANNELS = [64, 128, 256, 512]


def area_resample(mean, size):
    """The 224x224 mean image averaged over the source area each target pixel covers (as ResNet18Backbone does)."""
    source = mean.reshape(3, 224, 224).astype(np.float64)
    if size == 224:
        return mean.reshape(1, 3, 224, 224).astype(np.float32)
    scale = 224.0 / size
    weights = np.zeros((size, 224))
    for y in range(size):
        for s in range(int(math.floor(y * scale)), min(224, int(math.ceil((y + 1) * scale)))):
            weights[y, s] = min(s + 1, (y + 1) * scale) - max(s, y * scale)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("ys,csx,zx->cyz", weights, source, weights).reshape(1, 3, size, size).astype(np.float32)


class Backbone:
    """The ONNX network's nodes as PyTorch ops; parameters of the stages above the cut are trainable."""

    def __init__(self, model_dir, image_size, trained_stages, taps):
        model = onnx.load(f"{model_dir}/{NETWORK}")
        prep = onnx.load(f"{model_dir}/{PREPROCESS}")
        mean = next(numpy_helper.to_array(t) for t in prep.graph.initializer if t.name == "MeanImage")
        self.mean = torch.from_numpy(area_resample(mean, image_size))
        self.init = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float32).copy()) for t in model.graph.initializer}
        self.nodes = [n for n in model.graph.node if n.op_type != "AveragePool"]
        first = 5 - trained_stages
        self.cut = next(n.output[0] for n in self.nodes if n.op_type == "MaxPool") if first == 1 else STAGE_OUTPUTS[first - 2]
        cut_index = next(i for i, n in enumerate(self.nodes) if self.cut in n.output)
        self.frozen_nodes = self.nodes[: cut_index + 1]
        self.trained_nodes = self.nodes[cut_index + 1:]
        self.taps = taps
        # Trained: every convolution's weight and its batch norm's shift (beta); the batch norm's scale and running
        # statistics stay frozen. Named as MlNetFinetune names them (the shift as the folded bias it becomes).
        self.parameters = []
        self.decayed = set()
        producers = {n.output[0]: n for n in self.nodes}
        for node in self.trained_nodes:
            if node.op_type == "Conv":
                self.init[node.input[1]].requires_grad_(True)
                self.parameters.append((node.input[1], self.init[node.input[1]]))
                self.decayed.add(node.input[1])
                if len(node.input) > 2:
                    self.init[node.input[2]].requires_grad_(True)
                    self.parameters.append((node.input[2], self.init[node.input[2]]))
            elif node.op_type == "BatchNormalization":
                conv = producers[node.input[0]]
                self.init[node.input[2]].requires_grad_(True)
                self.parameters.append((conv.input[1] + "_folded_bias", self.init[node.input[2]]))

    @staticmethod
    def _attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def _run(self, nodes, values):
        for n in nodes:
            x = values[n.input[0]]
            if n.op_type == "Conv":
                top, left, bottom, right = self._attr(n, "pads", [0, 0, 0, 0])
                x = F.pad(x, (left, right, top, bottom))
                b = self.init[n.input[2]] if len(n.input) > 2 else None
                y = F.conv2d(x, self.init[n.input[1]], b, stride=self._attr(n, "strides")[0])
            elif n.op_type == "BatchNormalization":
                eps = self._attr(n, "epsilon", 1e-5)
                scale, shift, mean, var = (self.init[i] for i in n.input[1:5])
                y = F.batch_norm(x, mean, var, scale, shift, training=False, eps=eps)
            elif n.op_type == "Relu":
                y = F.relu(x)
            elif n.op_type == "Add":
                y = x + values[n.input[1]]
            elif n.op_type == "MaxPool":
                top, left, bottom, right = self._attr(n, "pads")
                y = F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-math.inf), 3, 2)
            else:
                raise ValueError(n.op_type)
            values[n.output[0]] = y
        return values

    def frozen(self, pixels):
        with torch.no_grad():
            bgr = pixels[:, [2, 1, 0]] - self.mean
            values = self._run(self.frozen_nodes, {"Input247": bgr})
            return values[self.cut]

    def features(self, cut_map):
        values = self._run(self.trained_nodes, {self.cut: cut_map})
        pooled = []
        for stage, grid in self.taps:
            m = values[STAGE_OUTPUTS[stage - 1]]
            pooled.append(torch.flatten(F.adaptive_avg_pool2d(m, grid), 1))
        return torch.cat(pooled, 1)


def parse_taps(text):
    taps = []
    for part in text.split("+"):
        stage, _, grid = part[1:].partition("g")
        taps.append((int(stage), int(grid or 1)))
    return taps


def param_groups(net, head_weights, head_biases, lr, head_multiple, weight_decay):
    """Weight decay on weights only (not on biases and batch-norm shifts); the head at a multiple of the rate."""
    weights = [p for n, p in net.parameters if n in net.decayed]
    shifts = [p for n, p in net.parameters if n not in net.decayed]
    return [
        {"params": weights, "lr": lr, "weight_decay": weight_decay},
        {"params": shifts, "lr": lr, "weight_decay": 0.0},
        {"params": head_weights, "lr": lr * head_multiple, "weight_decay": weight_decay},
        {"params": head_biases, "lr": lr * head_multiple, "weight_decay": 0.0},
    ]


def head_init(features, classes):
    """Deterministic head weights both sides compute from a formula (no shared random generator)."""
    i = np.arange(features * classes, dtype=np.float64)
    w = (0.05 * np.sin(i * 0.37 + 1.0)).astype(np.float32).reshape(features, classes)
    b = (0.01 * np.cos(np.arange(classes) * 0.5)).astype(np.float32)
    return torch.from_numpy(w.copy()), torch.from_numpy(b.copy())


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fixture(args):
    torch.set_num_threads(1)
    images = read_idx(f"{args.fashion_mnist}/t10k-images-idx3-ubyte.gz")[: args.images]
    labels = read_idx(f"{args.fashion_mnist}/t10k-labels-idx1-ubyte.gz")[: args.images].astype(np.int64)
    size = args.image_size
    index = (np.arange(size) * 28) // size
    gray = images[:, index][:, :, index]
    pixels_u8 = np.repeat(gray[:, None], 3, axis=1).astype(np.uint8)
    taps = parse_taps(args.features)
    net = Backbone(args.model_dir, size, args.stages, taps)
    features = sum(STAGE_CHANNELS[s - 1] * g * g for s, g in taps)
    hw, hb = head_init(features, args.classes)
    hw.requires_grad_(True)
    hb.requires_grad_(True)
    params = net.parameters + [("head_weight", hw), ("head_bias", hb)]
    start = {name: p.detach().clone() for name, p in params}
    sgd = torch.optim.SGD(param_groups(net, [hw], [hb], args.learning_rate, args.head_multiple, args.weight_decay),
                          lr=args.learning_rate, momentum=args.momentum)
    pixels = torch.from_numpy(pixels_u8.astype(np.float32))
    target = torch.from_numpy(labels)
    cut = net.frozen(pixels)
    losses = []
    for _ in range(args.steps):
        sgd.zero_grad()
        logits = net.features(cut) @ hw + hb
        loss = F.cross_entropy(logits, target)
        loss.backward()
        sgd.step()
        losses.append(float(loss))
    rng = np.random.default_rng(7)
    parameters = {}
    for name, p in params:
        delta = (p.detach() - start[name]).flatten().numpy()
        velocity = sgd.state[p]["momentum_buffer"].flatten().numpy()
        picks = np.sort(rng.choice(delta.size, size=min(args.samples, delta.size), replace=False))
        # Head weights are [features, classes] in both; conv weights are ONNX [K, C, kh, kw] here. The momentum
        # buffer (0.9 g1 + g2, weight decay included) is compared closely; the weight change, a small difference of
        # large float32 numbers, by its norm.
        parameters[name] = {
            "shape": list(p.shape),
            "deltaNorm": float(np.linalg.norm(delta.astype(np.float64))),
            "momentumNorm": float(np.linalg.norm(velocity.astype(np.float64))),
            "indices": [int(i) for i in picks],
            "momenta": [float(velocity[i]) for i in picks],
        }
    out = {
        "description": "two SGD steps of PyTorch 1.13 on the batch below; written by scripts/finetune-reference.py fixture",
        "imageSize": size, "stages": args.stages, "features": args.features, "classes": args.classes,
        "learningRate": args.learning_rate, "headLearningRate": args.learning_rate * args.head_multiple,
        "momentum": args.momentum, "weightDecay": args.weight_decay, "steps": args.steps,
        "labels": [int(x) for x in labels], "pixels": base64.b64encode(pixels_u8.tobytes()).decode(),
        "cutSum": float(cut.double().sum()), "losses": losses, "parameters": parameters,
    }
    with open(args.output, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.output}: losses {losses}")


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    taps = parse_taps(args.features)
    net = Backbone(args.model_dir, args.image_size, args.stages, taps)
    pixels = torch.from_numpy(np.fromfile(args.pixels, dtype=np.uint8).astype(np.float32)).reshape(-1, 3, args.image_size, args.image_size)
    labels = torch.from_numpy(np.fromfile(args.labels, dtype=np.int64))
    features = sum(STAGE_CHANNELS[s - 1] * g * g for s, g in taps)
    head = torch.nn.Linear(features, args.classes)
    sgd = torch.optim.SGD(param_groups(net, [head.weight], [head.bias], args.learning_rate, args.head_multiple, args.weight_decay),
                          lr=args.learning_rate, momentum=0.9)
    n = pixels.shape[0]
    epoch_times = []
    for epoch in range(args.epochs):
        order = torch.randperm(n)
        start = time.perf_counter()
        total = 0.0
        for i in range(0, n, args.batch_size):
            idx = order[i: i + args.batch_size]
            x = pixels[idx]
            if args.flip:
                flip = torch.rand(len(idx)) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            sgd.zero_grad()
            loss = F.cross_entropy(head(net.features(net.frozen(x))), labels[idx])
            loss.backward()
            sgd.step()
            total += float(loss) * len(idx)
        epoch_times.append(time.perf_counter() - start)
        print(json.dumps({"epoch": epoch + 1, "seconds": epoch_times[-1], "loss": total / n}), file=sys.stderr)
    print(json.dumps({"images": n, "epochSeconds": epoch_times, "imagesPerSecond": [n / t for t in epoch_times], "threads": torch.get_num_threads()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fixture", "bench"):
        p = sub.add_parser(name)
        p.add_argument("--model-dir", required=True, help="folder holding DnnImageModels/ (a build output folder)")
        p.add_argument("--image-size", type=int, default=64)
        p.add_argument("--stages", type=int, default=2)
        p.add_argument("--features", default="s3g2+s4")
        p.add_argument("--classes", type=int, default=10)
        p.add_argument("--learning-rate", type=float, default=0.001)
        p.add_argument("--head-multiple", type=float, default=10.0)
        p.add_argument("--weight-decay", type=float, default=5e-4)
    f = sub.choices["fixture"]
    f.add_argument("--fashion-mnist", default="/usr/share/datasets/fashion-mnist")
    f.add_argument("--images", type=int, default=4)
    f.add_argument("--momentum", type=float, default=0.9)
    f.add_argument("--steps", type=int, default=2)
    f.add_argument("--samples", type=int, default=16)
    f.add_argument("--output", required=True)
    b = sub.choices["bench"]
    b.add_argument("--pixels", required=True, help="raw uint8 [N,3,S,S] planar RGB")
    b.add_argument("--labels", required=True, help="raw int64 [N]")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--epochs", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--flip", action="store_true")
    b.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fixture(args) if args.command == "fixture" else bench(args)


if __name__ == "__main__":
    main()
