"""The ``holdout`` generator: real training images outside the run's training subset, as an ideal generator.

A perfect class-conditional generator would draw new images from the task's own distribution. The
training split already holds such images wherever a study trains on a ``train_subset`` of it: the
ones outside that subset. ``holdout`` writes ``images_per_class`` of them per class in the
dapt-synthetic-v1 format, so a distill run reads them through ``synthetic:`` like any generated set,
and a study can tell how good generated images are apart from how many images a student is
distilled on.

Which subset is excluded: the one ``load_dataset`` draws for the generate run itself, i.e.
``stratified_subset(train labels, train_subset, seed)`` with the generate run's ``seed`` (a generate
run has no ``subset_seed``). A teacher or distill run holds the same subset when its ``train_subset``
is equal and its subset seed (``subset_seed``, or ``seed`` when that is null) equals that ``seed``.

Which images: per class, a permutation of the class's images outside the subset, seeded by
(``seed``, class) (``dapt.data.imageset.outside_order``), whose first ``images_per_class`` are taken; a
larger ``images_per_class`` keeps the images drawn before and adds the next ones. A training run on the
same subset draws its validation images from the back of the same orders, so they are not among these
while both fit in a class (a distill run refuses an overlap). Each index entry records its image's index in the
training split (``train_index``), so the draw is auditable and a distill run can check it holds
none of them (``dapt.data.synthetic.check_outside_subset``).
"""
from __future__ import annotations

import torch
from PIL import Image

from dapt.core.errors import DaptError
from dapt.data.imageset import outside_order, subset_of


def draw(labels: torch.Tensor, train_subset: int | None, seed: int, per_class: int, classes: list[str],
         dataset: str = "the dataset") -> list[torch.Tensor]:
    """Per class, the training-split indices of ``per_class`` images outside the subset of ``train_subset``
    drawn with ``seed``, in the order drawn. One ``DaptError`` line when a class has fewer than that."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    subset = subset_of(labels, train_subset, seed)
    if len(subset) == len(labels):
        raise DaptError(f"generator holdout draws training images outside train_subset, but train_subset "
                        f"{train_subset} holds all {len(labels):,} training images of {dataset}; set train_subset "
                        f"below {len(labels):,} (the subset the teacher and distill runs train on)")
    members = outside_order(labels, subset, seed, len(classes))
    counts = [len(m) for m in members]
    short = [c for c, n in enumerate(counts) if n < per_class]
    if short:
        c = short[0]
        total = int((labels == c).sum())
        raise DaptError(f"generator holdout: class {classes[c]!r} of {dataset} has {counts[c]:,} training images "
                        f"outside the train_subset of {train_subset:,} ({total:,} in the training split, "
                        f"{total - counts[c]:,} in the subset), fewer than images_per_class {per_class:,}; set "
                        f"images_per_class to at most {min(counts):,} (the fewest of any class) or lower train_subset")
    return [m[:per_class] for m in members]


def picture(image: torch.Tensor) -> Image.Image:
    """A uint8 [3, S, S] image as a PIL image: grey ("L") when its three channels are equal, else RGB;
    either way it decodes back to the same pixels."""
    if torch.equal(image[0], image[1]) and torch.equal(image[0], image[2]):
        return Image.fromarray(image[0].numpy(), "L")
    return Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB")
