import hashlib
import json
from pathlib import Path

import pytest

from ml.classes import CLASS_NAMES
from ml.dataset import Dataset, DatasetError, Sample
from ml.splits import (
    Split,
    from_record,
    make_split,
    split_grouped,
    split_random,
)

FOLDERS = ("Benign", "Early", "Pre", "Pro")


def _samples(per_class=(60, 120, 110, 90), duplicate_pairs=((3, 10), (3, 11), (1, 40), (1, 41)), gaps=True):
    """Fake samples (no files): numbered 1..N per class, a few numbers skipped, some identical
    neighbour pairs (label, number) -> same sha256, like the real Pro/ folder."""
    duplicate_of = {}
    for label, number in duplicate_pairs[1::2]:
        duplicate_of[(label, number)] = (label, number - 1)
    samples = []
    for label, count in enumerate(per_class):
        numbers = [n for n in range(1, count + 1) if not (gaps and n % 17 == 0)]
        for number in numbers:
            key = duplicate_of.get((label, number), (label, number))
            digest = hashlib.sha256(f"{key}".encode()).hexdigest()
            samples.append(
                Sample(
                    path=Path("/data") / FOLDERS[label] / f"WBC-{number:03d}.jpg",
                    relpath=f"{FOLDERS[label]}/WBC-{number:03d}.jpg",
                    class_name=CLASS_NAMES[label],
                    label=label,
                    sha256=digest,
                    number=number,
                )
            )
    return samples


def _class_fraction(split, class_name, total):
    return {name: sum(s.class_name == class_name for s in part) / total for name, part in split.parts().items()}


@pytest.mark.parametrize(
    "make",
    [
        lambda s, seed: split_random(s, seed=seed),
        lambda s, seed: split_grouped(s, block_size=10, seed=seed),
    ],
)
def test_every_sample_once_and_no_duplicate_hash_across_splits(make):
    samples = _samples()
    for seed in range(5):
        split = make(samples, seed)
        used = [s.relpath for part in split.parts().values() for s in part]
        assert sorted(used) == sorted(s.relpath for s in samples)
        assert split.leaked_hashes() == set()


def test_random_split_is_stratified():
    samples = _samples()
    split = split_random(samples, fractions=(0.7, 0.15, 0.15), seed=3)
    for class_name in CLASS_NAMES:
        total = sum(s.class_name == class_name for s in samples)
        fractions = _class_fraction(split, class_name, total)
        assert fractions["train"] == pytest.approx(0.7, abs=0.03)
        assert fractions["val"] == pytest.approx(0.15, abs=0.03)
        assert fractions["test"] == pytest.approx(0.15, abs=0.03)


def test_grouped_split_keeps_blocks_together_and_is_stratified():
    samples = _samples(per_class=(200, 400, 400, 300))
    split = split_grouped(samples, block_size=20, seed=7)
    where = {}
    for name, part in split.parts().items():
        for s in part:
            where.setdefault((s.label, (s.number - 1) // 20), set()).add(name)
    # Blocks never straddle splits, except where an identical pair glues two blocks (not here).
    assert all(len(names) == 1 for names in where.values())
    for class_name in CLASS_NAMES:
        total = sum(s.class_name == class_name for s in samples)
        fractions = _class_fraction(split, class_name, total)
        assert fractions["train"] == pytest.approx(0.7, abs=0.08)
        assert fractions["val"] == pytest.approx(0.15, abs=0.06)
        assert fractions["test"] == pytest.approx(0.15, abs=0.06)
        assert fractions["val"] > 0 and fractions["test"] > 0


def test_grouped_split_merges_blocks_joined_by_a_duplicate():
    # Numbers 20 and 21 are identical files but fall in blocks 1..20 and 21..40.
    samples = _samples(per_class=(60, 60, 60, 60), duplicate_pairs=((2, 20), (2, 21)), gaps=False)
    for seed in range(10):
        split = split_grouped(samples, block_size=20, seed=seed)
        owner = {s.relpath: name for name, part in split.parts().items() for s in part}
        block_a = {owner[f"Pre/WBC-{n:03d}.jpg"] for n in range(1, 21)}
        block_b = {owner[f"Pre/WBC-{n:03d}.jpg"] for n in range(21, 41)}
        assert len(block_a | block_b) == 1


def test_small_class_still_gets_val_and_test_blocks():
    samples = _samples(per_class=(30, 30, 30, 30), duplicate_pairs=(), gaps=False)
    split = split_grouped(samples, block_size=10, seed=0)  # three blocks per class
    for class_name in CLASS_NAMES:
        assert all(any(s.class_name == class_name for s in part) for part in split.parts().values())


def test_same_seed_same_split_other_seed_other_split():
    samples = _samples()
    a, b = split_grouped(samples, block_size=10, seed=1), split_grouped(list(reversed(samples)), block_size=10, seed=1)
    assert a.to_record() == b.to_record()  # input order does not matter
    assert split_grouped(samples, block_size=10, seed=2).to_record() != a.to_record()


def test_zero_test_fraction():
    split = split_random(_samples(), fractions=(0.8, 0.2, 0.0), seed=0)
    assert split.test == [] and split.val


def test_bad_arguments():
    with pytest.raises(ValueError):
        split_random(_samples(), fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError):
        make_split(_samples(), "by-patient")


@pytest.mark.parametrize("mode", ["random", "grouped"])
def test_record_round_trip_reproduces_split(mode):
    samples = _samples()
    dataset = Dataset(root=Path("/data"), samples=samples)
    split = make_split(samples, mode, seed=5, block_size=10)
    record = json.loads(json.dumps(split.to_record()))  # survives JSON
    assert record["mode"] == mode and record["seed"] == 5 and record["fractions"] == [0.7, 0.15, 0.15]
    assert record["block_size"] == (10 if mode == "grouped" else None)
    assert set(record["splits"]["train"][0]) == {"file", "sha256"}
    rebuilt = Split.from_record(record, dataset)
    for name in ("train", "val", "test"):
        assert [s.relpath for s in getattr(rebuilt, name)] == [s.relpath for s in getattr(split, name)]
    assert rebuilt.to_record() == split.to_record()


def test_record_refuses_changed_or_missing_files():
    samples = _samples()
    split = split_random(samples, seed=0)
    record = split.to_record()
    changed = [
        s if s.relpath != split.test[0].relpath else Sample(**{**s.__dict__, "sha256": "0" * 64}) for s in samples
    ]
    with pytest.raises(DatasetError, match="changed.*" + split.test[0].relpath):
        from_record(record, Dataset(root=Path("/data"), samples=changed))
    missing = [s for s in samples if s.relpath != split.train[0].relpath]
    with pytest.raises(DatasetError, match="missing.*" + split.train[0].relpath):
        from_record(record, Dataset(root=Path("/data"), samples=missing))
