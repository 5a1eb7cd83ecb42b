"""Why the distillers' losses start far above cross-entropy, and whether each trains stably.

    PYTHONPATH=. .venv/bin/python benchmarks/loss_scales.py --teacher runs/fashion_quick/lite2_ft \
        --distillers none kd crd srrl align_uniform --epochs 4 [--set w_srrl=0.05 ...]

Needs a finished teacher run with its ``model.pt`` (``dapt run params/fashion_quick.yaml --only
lite2_ft``). For each distiller, on the embedded study's setting (MobileNetV2 from random init,
Fashion-MNIST, 6,000 images at 32 px, 4 cached views, AdamW lr 2e-3, cosine, batch 128):

1. at initialisation, over the first ``--probe`` batches: each term's unweighted and weighted
   value, and the norm of its weighted gradient on the student's penultimate features f_s (every
   gradient that reaches the student's body passes through f_s, so the ratio of these norms says
   whose gradient trains the body) and its cosine with the CE gradient there (does the teacher
   term push the body the way the labels do?), the student's and the teacher's feature norms, and for srrl
   the teacher head's logits on the connected student features against the teacher's own;
2. a training run of ``--epochs`` with the same data order, initialisation, optimizer, schedule
   and precise-BN evaluation as ``dapt run`` (its ``none`` and ``srrl`` reproduce the committed
   ``runs/fashion_quick/mnv2_*`` accuracies), logging each term per step and the same gradient
   norms every ``--every`` steps; it prints each epoch's accuracy on the run's validation images
   (logs saved before there was a validation set hold ``eval_acc``, on 1,000 test images) and the
   final accuracy on all 10,000 test images.

Accuracy does not depend on the machine's load; the wall times printed do.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from dapt.pipeline.config import DistillConfig
from dapt.data.augment import make_views
from dapt.data.diffaug import view_pixels
from dapt.distillers.base import build_distiller
from dapt.models.nets import create_model
from dapt.training.optim import build_optimizer, build_scheduler
from dapt.training.checkpoint import load_teacher
from dapt.training.teacher_cache import TeacherTargets, file_digest
from dapt.training.loop import (batches, calibration_images, epoch_generator, load_data, predict, prepare,
                                recalibrate_batchnorm)
from dapt.training import agreement as A

STUDY = dict(student="mobilenet_v2", dataset="fashion_mnist", train_subset=6000, image_size=32, eval_subset=1000,
             seed=0, cache_views=4, epochs=4, optimizer="adamw", lr=2.0e-3, weight_decay=0.05)


def build(cfg: DistillConfig, ds):
    """Student, distiller and teacher targets exactly as ``dapt.stages.distill`` builds them (same RNG order)."""
    torch.manual_seed(cfg.seed)
    teacher, meta = load_teacher(cfg.teacher, ds)
    student = create_model(cfg.student, ds.num_classes, pretrained=False, image_size=cfg.image_size)
    student.to(memory_format=torch.channels_last)
    teacher.to(memory_format=torch.channels_last)
    distiller = build_distiller(cfg.distiller, cfg, s_dim=student.feat_dim, t_dim=teacher.feat_dim,
                                num_classes=ds.num_classes, train_labels=ds.train_y, teacher_head=teacher.head,
                                seed=cfg.seed, steps_per_epoch=max(1, len(ds.train_y) // cfg.batch_size))
    views = make_views(len(ds.train_y), cfg.image_size, cfg.cache_views or cfg.epochs, cfg.seed, cfg.augment)
    key = (file_digest(Path(cfg.teacher) / "model.pt"), ds.name, cfg.image_size)
    targets = TeacherTargets(teacher, int(meta["image_size"]), ds.train_x, views,
                             cache_dir=Path(cfg.teacher) / "cache", key_parts=key, channels_last=True)
    return student, distiller, views, targets


def measure(student, distiller, ds, views, targets, index, epoch: int) -> tuple[dict, torch.Tensor]:
    """One batch: unweighted terms, weighted terms, per-term gradient norm on f_s, feature norms;
    and the weighted total (still attached to the graph, for training)."""
    view = epoch % len(views)
    x = view_pixels(ds.train_x[index], views[view].select(index), None)
    s_feat, s_logits = student.forward_features(prepare(x))
    t_z, t_f = targets.get(view, index)
    losses = distiller.unweighted(s_feat, s_logits, ds.train_y[index], t_f, t_z, index)
    weighted = distiller.weigh(losses)
    row = {f"raw_{k}": float(v.detach()) for k, v in losses.items()}
    row.update({f"loss_{k}": float(v.detach()) for k, v in weighted.items()})
    grads = {k: torch.autograd.grad(v, s_feat, retain_graph=True)[0].flatten() for k, v in weighted.items()}
    for k, grad in grads.items():
        row[f"grad_{k}"] = float(grad.norm())
        if k != "ce" and "ce" in grads:  # does the teacher term push f_s the way the labels do?
            row[f"cos_ce_{k}"] = float(torch.nn.functional.cosine_similarity(grad, grads["ce"], dim=0))
    row["feat_norm_s"] = float(s_feat.detach().norm(dim=1).mean())
    row["feat_norm_t"] = float(t_f.norm(dim=1).mean())
    if hasattr(distiller, "connector"):  # srrl: the teacher head's logits on the connected student features
        with torch.no_grad():
            mapped = distiller.connector(s_feat.detach())
            head = torch.nn.functional.linear(mapped, distiller.head_weight, distiller.head_bias)
        row.update(head_logit_rms=float(head.pow(2).mean().sqrt()), teacher_logit_rms=float(t_z.pow(2).mean().sqrt()),
                   connector_dead=float((mapped == 0).float().mean()),
                   head_agreement=float((head.argmax(1) == t_z.argmax(1)).float().mean()))
    return row, sum(weighted.values())


def probe(cfg, ds, batches_: int) -> dict:
    """Averages of ``measure`` over the first batches of epoch 0, on copies (CRD's banks stay untouched)."""
    student, distiller, views, targets = build(cfg, ds)
    student, distiller = copy.deepcopy(student).train(), copy.deepcopy(distiller).train()
    rows = [measure(student, distiller, ds, views, targets, index, 0)[0]
            for index in batches(len(ds.train_y), cfg.batch_size, epoch_generator(cfg.seed, 0))[:batches_]]
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def train(cfg, ds, every: int, clip: float | None, stop_after: int | None = None) -> dict:
    """The ``dapt run`` training loop (``dapt.training.trainer.Trainer.fit``), instrumented; returns the log.
    ``stop_after`` epochs: only the first epochs of the ``cfg.epochs`` schedule (then no final test)."""
    student, distiller, views, targets = build(cfg, ds)
    groups = [{"params": list(student.parameters()) + list(distiller.parameters()), "lr": cfg.lr}]
    optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay)
    steps = max(1, len(ds.train_y) // cfg.batch_size)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps, cfg.epochs, cfg.step_size, cfg.step_gamma)
    log: dict = {"steps": [], "epochs": []}
    start = time.perf_counter()
    for epoch in range(min(cfg.epochs, stop_after or cfg.epochs)):
        student.train()
        distiller.train()
        for step, index in enumerate(batches(len(ds.train_y), cfg.batch_size, epoch_generator(cfg.seed, epoch))):
            global_step = epoch * steps + step
            if global_step % every == 0:
                row, loss = measure(student, distiller, ds, views, targets, index, epoch)
                log["steps"].append({"step": global_step, **row})
            else:
                view = epoch % len(views)
                x = view_pixels(ds.train_x[index], views[view].select(index), None)
                s_feat, s_logits = student.forward_features(prepare(x))
                t_z, t_f = targets.get(view, index)
                loss, _ = distiller(s_feat, s_logits, ds.train_y[index], t_feat=t_f, t_logits=t_z, index=index)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"{cfg.distiller}: loss {loss.item()} at step {global_step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], clip)
            optimizer.step()
            scheduler.step()
        recalibrate_batchnorm(student, calibration_images(cfg, ds, epoch), cfg.batch_size, True)
        logits, _ = predict(student, ds.val_x)
        log["epochs"].append({"epoch": epoch + 1, "val_acc": A.accuracy(logits, ds.val_y)})
        print(f"  {cfg.distiller} epoch {epoch + 1}: val acc {log['epochs'][-1]['val_acc']:.4f}, "
              f"last logged step {log['steps'][-1]}", flush=True)
    if len(log["epochs"]) == cfg.epochs:
        logits, _ = predict(student, ds.test_x)
        log["test_acc"] = A.accuracy(logits, ds.test_y)
    log["wall_s"] = time.perf_counter() - start
    return log


def table(paths: list[str]) -> None:
    """One line per distiller of each saved ``--out`` log: its settings, each teacher term's
    value, gradient ratio to CE and cosine with CE at initialisation, during training (the median
    over the logged steps of the second half: each term's gradient on f_s over CE's; for srrl the
    agreement of the teacher head's argmax on the connected features with the teacher's), and
    its accuracies."""
    print("| run | settings | at init: term = value (grad / CE grad, cos with CE) | 2nd half: grad / CE grad "
          "(srrl head agreement) | val acc by epoch (older logs: test subset) | test acc |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        for name, entry in json.loads(Path(path).read_text()).items():
            p = entry["probe"]
            terms = "; ".join(f"{k} = {p['loss_' + k]:.3g} ({p['grad_' + k] / p['grad_ce']:.2g}x, "
                              f"{p.get('cos_ce_' + k, float('nan')):+.2f})"
                              for k in ("kd", "embed", "srrl") if "loss_" + k in p)
            log = entry.get("train", {})
            late = log.get("steps", [])[len(log.get("steps", [])) // 2:]
            median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
            during = "; ".join(f"{k} {median([r['grad_' + k] / r['grad_ce'] for r in late]):.2g}x"
                               for k in ("kd", "embed", "srrl") if late and "grad_" + k in late[0])
            if late and "head_agreement" in late[0]:
                during += f" ({median([r['head_agreement'] for r in late]):.2f})"
            accs = ", ".join(f"{e.get('val_acc', e.get('eval_acc')):.3f}" for e in log.get("epochs", []))
            settings = ", ".join(f"{k}={v}" for k, v in entry["settings"].items()) or "defaults"
            test = f"{log['test_acc']:.4f}" if "test_acc" in log else "-"
            print(f"| {name} | {settings} | ce = {p['loss_ce']:.3g}; {terms or '-'} | {during or '-'} | {accs} | {test} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/fashion_quick/lite2_ft")
    parser.add_argument("--distillers", nargs="+", default=["none", "kd", "crd", "srrl", "align_uniform"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--stop-after", type=int, default=None,
                        help="train only the first N epochs of the --epochs schedule")
    parser.add_argument("--probe", type=int, default=4, help="batches averaged at initialisation")
    parser.add_argument("--every", type=int, default=5, help="log the terms and gradients every N steps")
    parser.add_argument("--clip", type=float, default=None, help="diagnostic: clip the total gradient norm")
    parser.add_argument("--no-train", action="store_true", help="only the probe at initialisation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a DistillConfig value for every distiller (YAML), e.g. w_srrl=0.05")
    parser.add_argument("--out", default=None, help="write the full log as JSON here")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of saved --out logs")
    args = parser.parse_args()
    if args.table:
        return table(args.table)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    report = {}
    for name in args.distillers:
        cfg = DistillConfig(**{**STUDY, "epochs": args.epochs, **overrides, "teacher": args.teacher, "distiller": name})
        ds = load_data(cfg)
        entry = {"settings": overrides, "clip": args.clip, "probe": probe(cfg, ds, args.probe)}
        print(f"{name} at init: " + ", ".join(f"{k} {v:.4g}" for k, v in entry["probe"].items()), flush=True)
        if not args.no_train:
            entry["train"] = log = train(cfg, ds, args.every, args.clip, args.stop_after)
            print(f"{name}: test acc {log.get('test_acc', float('nan')):.4f}, val acc by epoch "
                  f"{[e['val_acc'] for e in log['epochs']]} ({log['wall_s']:.0f} s, shared machine)", flush=True)
        report[name] = entry
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
