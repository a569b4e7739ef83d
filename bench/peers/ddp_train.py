#!/usr/bin/env python3
"""What users would run instead of rdmacoll-train: PyTorch DDP with its gloo backend, the same
784-256-128-10 MLP, data (standardised with the training set's mean and std), global batch split
over the ranks, SGD (lr, momentum, weight decay) with the learning rate cosine-annealed to 0 per
iteration, and optionally DDP's fp16 or PowerSGD communication hook. Launched like rdmacoll-train:

  rdmacoll-run -n 4 [--link 100mbit] -- python3 bench/peers/ddp_train.py --hook fp16 --json F

It reads RDMACOLL_RANK/WORLD_SIZE/ADDR, and with --link (RDMACOLL_LINK set) talks over the
rank's link device (UCX_NET_DEVICES, which rdmacoll-run sets), whose transmit counter gives the
bytes each rank sent; on loopback the bytes are not counted (lo carries everyone's traffic).
Rank 0 writes a JSON log in rdmacoll-train's layout (tool "pytorch-ddp") for
rdmacoll-train-summary. Debian's python3-torch (PyTorch 1.13); one thread per rank.
"""
import argparse
import datetime
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel as DDP


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, prefix):
    def path(name):
        p = os.path.join(data_dir, f"{prefix}-{name}")
        return p if os.path.exists(p) else p + ".gz"
    x = read_idx(path("images-idx3-ubyte")).reshape(-1, 784).astype(np.float32) / 255.0
    return x, read_idx(path("labels-idx1-ubyte")).astype(np.int64)


def tx_bytes(dev):
    if dev is None:
        return 0
    with open(f"/sys/class/net/{dev}/statistics/tx_bytes") as f:
        return int(f.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hook", default="none", help="none, fp16 or powersgd:R")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    rank, ranks = int(os.environ["RDMACOLL_RANK"]), int(os.environ["RDMACOLL_WORLD_SIZE"])
    link = os.environ.get("RDMACOLL_LINK")
    dev = os.environ.get("UCX_NET_DEVICES") if link else None
    os.environ["GLOO_SOCKET_IFNAME"] = dev or "lo"
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)

    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    mean, std = float(xtr.mean()), float(xtr.std())
    if a.limit_train:
        xtr, ytr = xtr[:a.limit_train], ytr[:a.limit_train]
    xtr, xte = torch.from_numpy((xtr - mean) / std), torch.from_numpy((xte - mean) / std)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    dist.init_process_group("gloo", init_method="tcp://" + os.environ["RDMACOLL_ADDR"], rank=rank,
                            world_size=ranks, timeout=datetime.timedelta(seconds=600))
    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    model = DDP(net)  # broadcasts rank 0's initial weights
    if a.hook == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif a.hook.startswith("powersgd:"):
        # Compress from the second step on (the default waits 1000 steps, 4 epochs here).
        state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=int(a.hook.split(":")[1]),
                                            start_powerSGD_iter=2)
        model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    elif a.hook != "none":
        sys.exit(f"ddp_train.py: --hook {a.hook} is not none, fp16 or powersgd:R")
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    steps = math.ceil(len(ytr) / a.batch)
    total = a.epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    params = sum(p.numel() for p in net.parameters())

    rows, t_run = [], time.monotonic()
    for epoch in range(a.epochs):
        g = torch.Generator().manual_seed(a.seed * 100003 + epoch)
        perm = torch.randperm(len(ytr), generator=g)
        tx0, t0, loss_sum, seen = tx_bytes(dev), time.monotonic(), 0.0, 0
        model.train()
        for b in range(steps):
            mine = perm[b * a.batch:(b + 1) * a.batch][rank::ranks]
            out = model(xtr[mine])
            loss = loss_fn(out, ytr[mine])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(mine)
            seen += len(mine)
        epoch_s = time.monotonic() - t0
        wire = tx_bytes(dev) - tx0
        with torch.no_grad():
            correct = (net(xte).argmax(1) == yte).sum().item()  # every rank: the replicas are equal
        stats = torch.tensor([loss_sum, seen, epoch_s, wire], dtype=torch.float64)
        dist.all_reduce(stats)
        rows.append({"epoch": epoch + 1, "train_loss": stats[0].item() / stats[1].item(),
                     "test_accuracy": correct / len(yte), "lr": sched.get_last_lr()[0],
                     "compute_s": stats[2].item() / ranks, "comm_s": None,
                     "wire_bytes": stats[3].item() / ranks if dev else None,
                     "plain_bytes": 2.0 * (ranks - 1) / ranks * 4 * params * steps})
        if rank == 0:
            print(f"epoch {epoch + 1:3d}  loss {rows[-1]['train_loss']:.4f}  test_acc {rows[-1]['test_accuracy']:.4f}"
                  f"  {epoch_s:6.2f} s" + (f"  {wire / 1e6:8.2f} MB" if dev else ""), flush=True)
    if rank == 0:
        doc = {"tool": "pytorch-ddp",
               "run": {"ranks": ranks, "transport": f"PyTorch {torch.__version__} DDP, gloo over {dev or 'lo'}",
                       "link": link, "compress": "ddp " + ("fp32" if a.hook == "none" else a.hook),
                       "error_feedback": True, "epochs": a.epochs, "batch": a.batch, "lr": a.lr,
                       "momentum": a.momentum, "weight_decay": a.weight_decay, "schedule": "cosine",
                       "seed": a.seed, "train_examples": len(ytr), "test_examples": len(yte),
                       "steps_per_epoch": steps, "parameters": params, "input_mean": mean, "input_std": std},
               "epochs": rows, "completed": True, "final_test_accuracy": rows[-1]["test_accuracy"],
               "total_s": time.monotonic() - t_run, "post_training": None}
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
