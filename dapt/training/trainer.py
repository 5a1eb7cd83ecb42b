"""The one trainer every training stage runs on: seed → build → optimizer/scheduler → record → epochs
→ model.pt → final evaluation.

A stage subclasses ``Trainer`` and says only what it trains: ``build`` (the model, its parameter groups
and the modules ``last.pt`` keeps), ``step`` (one batch → loss), ``evaluate`` (after an evaluated epoch,
on the validation images: it chooses ``best.pt``) and ``final`` (on all test images after the last epoch,
the only time the test set is read). ``fit`` is the whole loop on one screen::

    start_run → for each epoch: begin_epoch → for each batch: step, end_step → end_epoch → end_run

Data stay uint8 tensors in memory; each batch is augmented on tensors, turned into floats in [0, 1] and
handed to the model, which normalises it itself. Every epoch appends to the run's ``metrics.json`` and
writes ``last.pt`` (with ``checkpoint_every``, every N steps too), so ``resume: true`` continues where a
run stopped, also in the middle of an epoch, with the very state an uninterrupted run had at that step.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dapt.core import distributed
from dapt.core.errors import DaptError
from dapt.core.progress import progress
from dapt.core.records import RunRecord
from dapt.core.torch_files import atomic_save, safe_load
from dapt.data.imageset import ImageSet
from dapt.models.nets import Net
from dapt.training.checkpoint import save_model
from dapt.training.device import Placement
from dapt.training.loop import batches, calibration_images, epoch_generator, evaluates_after, recalibrate_batchnorm
from dapt.training.optim import build_optimizer, build_scheduler


class Trainer:
    """Trains one model for ``cfg.epochs`` on ``ds`` and records everything in ``record``.

    ``ds`` holds the run's validation images (``loop.load_data``): the evaluated epochs read them, the test
    set is read once, by ``final()`` on the last epoch's model. The run stays ``running`` until the notebook
    calls ``record.finish()`` after its figures; an exception marks it ``failed`` (``interrupted`` on
    Ctrl-C) and is re-raised.
    """

    role = "student"  # what the trained model is to the study: the key of its precision in the run's provenance

    # set by ``build``
    model: Net  # saved as model.pt (last epoch) and best.pt (best validation accuracy of the evaluated epochs)
    meta: dict  # saved beside the weights: architecture, classes, dataset, image size, ...
    param_groups: list[dict]
    resumable: dict[str, nn.Module]  # name -> module whose state last.pt keeps

    def __init__(self, cfg, ds: ImageSet, record: RunRecord):
        self.cfg, self.ds, self.record = cfg, ds, record
        # device, autocast and loss scaling of the steps; ``build`` moves its modules to place.device
        self.place = Placement.of(cfg)
        self.steps = max(1, len(ds.train_y) // cfg.batch_size)  # per epoch: the ragged tail is dropped
        self.best, self.best_epoch = -1.0, 0

    def fit(self) -> "Trainer":
        """Train for ``cfg.epochs``: each epoch its batches, each batch one ``step`` under autocast."""
        with self.record.recording():
            self.start_run()
            for epoch in range(self.start_epoch, self.cfg.epochs):
                for step, index in self.begin_epoch(epoch):
                    index = distributed.shard(index)  # several processes: this one's slice of the global batch
                    with self.place.autocast():
                        loss, logits, parts = self.step(index, epoch, self.augment_generator)
                    self.end_step(epoch, step, index, loss, logits, parts)
                self.end_epoch(epoch)
            self.end_run()
        return self

    # what a stage says
    def build(self) -> None:
        """Set ``model``, ``meta``, ``param_groups`` and ``resumable``; called right after seeding the global RNG."""
        raise NotImplementedError

    def step(self, index: torch.Tensor, epoch: int, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The batch of training images ``index`` → (loss, logits, weighted loss parts); ``generator`` draws
        the epoch's augmentations."""
        raise NotImplementedError

    def evaluate(self) -> dict:
        """After each evaluated epoch (``eval_every``), on the validation images, never the test set: at least
        ``val_acc``."""
        raise NotImplementedError

    def final(self) -> dict:
        """After the last epoch, on all test images: the run's final numbers."""
        raise NotImplementedError

    def set_train_mode(self) -> None:
        """At the start of every epoch."""
        self.model.train()

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of ``loss`` (several processes: averaged over the ranks by DDP)."""
        self.place.backward(loss)

    # the run
    def start_run(self) -> None:
        """Seed, build, place, and set up the optimizer, the schedule, the record and the progress bar;
        resume from ``last.pt`` if asked."""
        cfg, ds, record, place = self.cfg, self.ds, self.record, self.place
        if ds.val_y is None:
            raise DaptError(f"the {ds.name} images of this run hold no validation set, which the evaluated epochs "
                            f"and best.pt read; load them with dapt.training.loop.load_data(cfg)")
        distributed.check_batch_size(cfg.batch_size)
        torch.manual_seed(cfg.seed)
        self.build()
        place.compile_model(self.model)
        record.update(device=str(place.device))
        record.complete_provenance(**place.describe(), **{self.role: place.precision})
        self.optimizer = build_optimizer(cfg.optimizer, self.param_groups, cfg.lr, cfg.weight_decay)
        self.scheduler = build_scheduler(cfg.scheduler, self.optimizer, self.steps, cfg.epochs, cfg.step_size,
                                         cfg.step_gamma)
        record.update(val_images=len(ds.val_y), val_source=ds.val_source, test_images=len(ds.test_y))
        self.resumed = self.load_resume_state() if cfg.resume and record.path("last.pt").is_file() else {}
        self.start_epoch, self.start_step = int(self.resumed.get("epoch", 0)), int(self.resumed.get("step", 0))
        self.bar = progress(total=self.steps * cfg.epochs, initial=self.steps * self.start_epoch + self.start_step,
                            desc=record.folder.name, unit="batch")

    def end_run(self) -> None:
        """``model.pt`` (the last epoch's weights) and the final numbers on all test images."""
        self.bar.close()
        if distributed.is_main():
            save_model(self.record.path("model.pt"), self.model, self.meta)
        self.record.update(**self.final())

    # an epoch
    def begin_epoch(self, epoch: int) -> list[tuple[int, torch.Tensor]]:
        """Train mode, the epoch's running totals and augmentation stream; its batches still to take, numbered
        from 1 (a run resumed from a mid-epoch checkpoint skips those already taken)."""
        cfg = self.cfg
        self.set_train_mode()
        self.totals: dict[str, Any] = {"loss": 0.0, "correct": 0, "seen": 0, "parts": {}}
        self.augment_generator = epoch_generator(cfg.seed, epoch, stream=1)
        order = batches(len(self.ds.train_y), cfg.batch_size, epoch_generator(cfg.seed, epoch))
        done = self.start_step if epoch == self.start_epoch else 0
        if done:  # where the checkpoint's sums and augmentation stream stood
            self.totals = {**self.resumed["totals"], "parts": dict(self.resumed["totals"]["parts"])}
            self.augment_generator.set_state(self.resumed["augment_rng"])
        return list(enumerate(order[done:], done + 1))

    def end_step(self, epoch: int, step: int, index: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor,
                 parts: dict[str, float]) -> None:
        """The optimizer step on the batch's loss, the epoch's totals, the progress bar and, every
        ``checkpoint_every`` steps, ``last.pt``."""
        sums = distributed.sum_across({"loss": loss.item() * len(index), "seen": len(index),
                                       "correct": (logits.argmax(1).cpu() == self.ds.train_y[index]).sum().item(),
                                       **{key: part * len(index) for key, part in parts.items()}})
        value = sums["loss"] / sums["seen"]  # the global batch's: every rank stops alike on a bad one
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at epoch {epoch + 1}; lower lr")
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(loss)
        self.place.step(self.optimizer)
        self.scheduler.step()
        self.tally(sums, parts)
        self.bar.update(1)
        self.record.step_done()
        self.bar.set_postfix_str(f"epoch {epoch + 1}/{self.cfg.epochs} loss {value:.3f}", refresh=False)
        every = self.cfg.checkpoint_every
        if every and step < self.steps and (epoch * self.steps + step) % every == 0:
            self.save_resume_state(epoch, step)

    def tally(self, sums: dict[str, float], parts: dict[str, float]) -> None:
        """Add a global batch's sums to the epoch's totals."""
        totals = self.totals
        totals["loss"] += sums["loss"]
        totals["correct"] += int(sums["correct"])
        totals["seen"] += int(sums["seen"])
        for key in parts:
            totals["parts"][key] = totals["parts"].get(key, 0.0) + sums[key]

    def end_epoch(self, epoch: int) -> None:
        """The epoch's means, its evaluation when it has one, logged to ``metrics.json``, the tracker and the
        screen; then ``last.pt``."""
        totals, seen = self.totals, self.totals["seen"]
        entry = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                 "train_loss": totals["loss"] / seen, "train_acc": totals["correct"] / seen}
        entry.update({f"loss_{k}": v / seen for k, v in totals["parts"].items()})
        if evaluates_after(epoch + 1, self.cfg):
            entry.update(self.validate(epoch))
        self.record.log_epoch(entry)  # one write of metrics.json per epoch
        self.record.tracker.log(entry, step=epoch + 1)  # the record finishes the tracker
        self.bar.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                                           if k not in ("epoch", "lr") and isinstance(v, float)))
        self.save_resume_state(epoch + 1, 0)

    def validate(self, epoch: int) -> dict:
        """``evaluate`` after precise BN (``cfg.precise_bn``); a better ``val_acc`` than every earlier
        evaluated epoch's writes ``best.pt``."""
        cfg = self.cfg
        if cfg.precise_bn:
            recalibrate_batchnorm(self.model, calibration_images(cfg, self.ds, epoch), cfg.batch_size,
                                  cfg.channels_last)
        numbers = self.evaluate()
        if numbers["val_acc"] > self.best:
            self.best, self.best_epoch = numbers["val_acc"], epoch + 1
            if distributed.is_main():
                save_model(self.record.path("best.pt"), self.model, self.meta)
        self.record.metrics.update(best_val_acc=self.best, best_epoch=self.best_epoch)
        return numbers

    # last.pt
    def save_resume_state(self, epoch_done: int, step: int) -> None:
        """``last.pt`` after ``epoch_done`` epochs and ``step`` batches of the next (0: at an epoch's end)."""
        if not distributed.is_main():  # the totals are global sums, every rank holds the same state
            return
        state = {"epoch": epoch_done, "step": step, "steps_per_epoch": self.steps, "best": self.best,
                 "best_epoch": self.best_epoch, "history": self.record.metrics["history"],
                 "modules": {k: m.state_dict() for k, m in self.resumable.items()},
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": torch.get_rng_state(), **self.place.resume_state()}
        if step:  # in the middle of an epoch: where its sums and its augmentation stream stand
            state.update(totals=self.totals, augment_rng=self.augment_generator.get_state())
        atomic_save(state, self.record.path("last.pt"))

    def load_resume_state(self) -> dict:
        """Load ``last.pt`` into the modules, optimizer, scheduler, global RNG and best epoch; returns the
        checkpoint, whose mid-epoch sums and augmentation stream ``begin_epoch`` picks up."""
        path = self.record.path("last.pt")
        state = safe_load(path, "resume checkpoint", "run it again without resume (--resume) to start afresh")
        if int(state.get("steps_per_epoch", self.steps)) != self.steps:
            raise DaptError(f"{path.as_posix()} was written with {state['steps_per_epoch']} steps per epoch, this "
                            f"run has {self.steps}: its data or batch size changed; run it again without resume")
        if any("test_acc" in entry for entry in state["history"]):
            raise DaptError(f"{path.as_posix()} was written when the evaluated epochs read test images, this run "
                            f"reads validation images; run it again without resume")
        for name, module in self.resumable.items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.record.metrics["history"] = list(state["history"])
        torch.set_rng_state(state["rng"])  # dropout and stochastic depth draw from the global stream
        self.place.load_resume_state(state)
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        return state
