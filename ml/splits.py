"""Train/validation/test splits: random (image level) or grouped (blocks of acquisition numbers).

Neighbouring file numbers come from the same patient/slide, so a random image-level split puts a
patient in both train and test and overstates accuracy. ``split_grouped`` cuts each class into
contiguous blocks of file numbers (a block approximates a patient) and assigns whole blocks.
In both modes byte-identical files are merged into one unit first, so a duplicate can never sit on
both sides of a split. Every split can be written as a JSON record and rebuilt exactly from it.
"""

from dataclasses import dataclass, field

import numpy as np

from .classes import CLASS_NAMES
from .dataset import DatasetError

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
# Development data: 89 patients for 3256 images, i.e. roughly 20 (benign) to 45 (ALL) images each.
DEFAULT_BLOCK_SIZE = 40
RECORD_FORMAT = 1


@dataclass
class Split:
    train: list
    val: list
    test: list
    mode: str
    seed: int
    fractions: tuple
    block_size: int = None
    extra: dict = field(default_factory=dict)

    def parts(self):
        return {"train": self.train, "val": self.val, "test": self.test}

    def counts(self):
        """{split: {class name: count}} for reports."""
        return {
            name: {c: sum(1 for s in part if s.class_name == c) for c in CLASS_NAMES}
            for name, part in self.parts().items()
        }

    def leaked_hashes(self):
        """sha256 values found in more than one split (always empty for splits made here)."""
        owner, leaked = {}, set()
        for name, part in self.parts().items():
            for sample in part:
                if owner.setdefault(sample.sha256, name) != name:
                    leaked.add(sample.sha256)
        return leaked

    def to_record(self):
        """JSON-able description from which ``from_record`` rebuilds exactly this split."""
        return {
            "format": RECORD_FORMAT,
            "mode": self.mode,
            "seed": self.seed,
            "fractions": list(self.fractions),
            "block_size": self.block_size,
            "counts": self.counts(),
            "splits": {
                name: [{"file": s.relpath, "sha256": s.sha256} for s in part] for name, part in self.parts().items()
            },
        }

    @classmethod
    def from_record(cls, record, dataset):
        return from_record(record, dataset)


def from_record(record, dataset):
    """Rebuild a Split from ``record`` against a scanned ``dataset``.

    Refuses (DatasetError) files that are missing from the dataset or whose bytes changed, so a
    reproduced result really uses the same images.
    """
    if record.get("format") != RECORD_FORMAT:
        raise DatasetError(f"Unsupported split record format {record.get('format')!r}")
    index = dataset.by_relpath()
    missing, changed, parts = [], [], {}
    for name in SPLIT_NAMES:
        part = []
        for entry in record["splits"].get(name, []):
            sample = index.get(entry["file"])
            if sample is None:
                missing.append(entry["file"])
            elif sample.sha256 != entry["sha256"]:
                changed.append(entry["file"])
            else:
                part.append(sample)
        parts[name] = part
    if missing or changed:
        problems = []
        if missing:
            problems.append(f"{len(missing)} file(s) missing: {', '.join(missing[:10])}")
        if changed:
            problems.append(f"{len(changed)} file(s) changed: {', '.join(changed[:10])}")
        raise DatasetError(f"Split record does not match the data in {dataset.root}: " + "; ".join(problems))
    return Split(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        mode=record["mode"],
        seed=record["seed"],
        fractions=tuple(record["fractions"]),
        block_size=record.get("block_size"),
    )


def _check_fractions(fractions):
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if fractions[0] == 0:
        raise ValueError("the train fraction must be positive")
    return fractions


def _merge_duplicates(samples, unit_of):
    """Union units that share a sha256; returns a list of units (lists of samples)."""
    parent = {}

    def find(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    first_unit_for_hash = {}
    for sample in samples:
        unit = unit_of(sample)
        parent.setdefault(unit, unit)
        other = first_unit_for_hash.setdefault(sample.sha256, unit)
        root_a, root_b = find(unit), find(other)
        if root_a != root_b:
            parent[root_b] = root_a
    units = {}
    for sample in samples:
        units.setdefault(find(unit_of(sample)), []).append(sample)
    return list(units.values())


def _assign_units(units, fractions, rng):
    """Assign units (lists of samples) to train/val/test, stratified by each unit's majority class.

    Per class, units are shuffled and laid end to end; a unit goes to the split in which its
    midpoint falls (boundaries at the cumulative fractions), which keeps proportions close for
    any unit size. A split with a positive fraction that ends up empty takes one unit from the
    split with the most units, when there are enough units to go round.
    """
    by_class = {}
    for unit in units:
        labels = [s.label for s in unit]
        by_class.setdefault(max(set(labels), key=labels.count), []).append(unit)
    bounds = np.cumsum(fractions)
    parts = {name: [] for name in SPLIT_NAMES}
    for label in sorted(by_class):
        # Sort first so the result depends only on the samples and the seed, not on input order.
        class_units = sorted(by_class[label], key=lambda u: min(s.relpath for s in u))
        order = rng.permutation(len(class_units))
        class_units = [class_units[i] for i in order]
        total = sum(len(u) for u in class_units)
        assigned = {name: [] for name in SPLIT_NAMES}
        position = 0
        for unit in class_units:
            midpoint = (position + len(unit) / 2) / total
            index = min(int(np.searchsorted(bounds, midpoint, side="right")), 2)
            assigned[SPLIT_NAMES[index]].append(unit)
            position += len(unit)
        wanted = [name for name, f in zip(SPLIT_NAMES, fractions) if f > 0]
        if len(class_units) >= len(wanted):
            for name in wanted:
                if not assigned[name]:
                    donor = max(SPLIT_NAMES, key=lambda n: len(assigned[n]))
                    smallest = min(assigned[donor], key=len)
                    assigned[donor].remove(smallest)
                    assigned[name].append(smallest)
        for name in SPLIT_NAMES:
            parts[name].extend(s for unit in assigned[name] for s in unit)
    for name in SPLIT_NAMES:
        parts[name].sort(key=lambda s: (s.label, s.number, s.relpath))
    return parts


def split_random(samples, fractions=DEFAULT_FRACTIONS, seed=0):
    """Image-level split stratified by class; identical files always stay together."""
    fractions = _check_fractions(fractions)
    samples = list(samples)
    units = _merge_duplicates(samples, unit_of=lambda s: s.relpath)
    parts = _assign_units(units, fractions, np.random.default_rng(seed))
    return Split(**parts, mode="random", seed=seed, fractions=fractions, block_size=None)


def split_grouped(samples, block_size=DEFAULT_BLOCK_SIZE, fractions=DEFAULT_FRACTIONS, seed=0):
    """Patient-approximating split: whole blocks of ``block_size`` consecutive file numbers.

    Blocks are counted from each class's lowest file number (numbers first..first+block_size-1
    form block 0, and so on), then assigned whole to train/val/test, stratified by class.
    """
    fractions = _check_fractions(fractions)
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    samples = list(samples)
    first = {}
    for sample in samples:
        first[sample.label] = min(first.get(sample.label, sample.number), sample.number)

    def block_of(sample):
        return (sample.label, (sample.number - first[sample.label]) // block_size)

    units = _merge_duplicates(samples, unit_of=block_of)
    parts = _assign_units(units, fractions, np.random.default_rng(seed))
    return Split(**parts, mode="grouped", seed=seed, fractions=fractions, block_size=block_size)


def make_split(samples, mode, fractions=DEFAULT_FRACTIONS, seed=0, block_size=DEFAULT_BLOCK_SIZE):
    """Dispatch on ``mode`` ('random' or 'grouped')."""
    if mode == "random":
        return split_random(samples, fractions=fractions, seed=seed)
    if mode == "grouped":
        return split_grouped(samples, block_size=block_size, fractions=fractions, seed=seed)
    raise ValueError(f"split mode must be 'random' or 'grouped', got {mode!r}")
