"""Classify any FASTA with a fine-tuned model: per-window and per-record class probabilities.

Records are streamed and cut into windows of the model's training length (the last window is
moved back to end at the record's end; records shorter than a window are one padded window), so
memory stays bounded by one record and one batch. Windows are measured in bases and encoded
by the model's own tokenizer (any kind, through `encoder_for`), then right-padded with [PAD] to
the longest window of the batch in tokens. Per record:
- `prob_<label>`: mean over windows of each class probability (the call: `predicted`);
- `max_<positive>`: the highest window probability of the positive class (id 1), which flags a
  short viral island in a long host contig;
- `weighted_<positive>`: the mean weighted by the bases each window adds to the record's coverage
  (a tail window that overlaps its neighbour counts only for its new bases), so every base of the
  record counts once.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dnalm.fasta import read_fasta
from dnalm.tokenization import encoder_for
from dnalm.training import autocast


def record_windows(length: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) windows covering a record of `length` bases, the last one flush with its end."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


TRAINING_INFO = "dnalm_training.json"


def write_training_info(model_dir: str | Path, *, window_length: int, labels: list[str]) -> None:
    """Record beside a fine-tuned model what prediction needs to cut windows like training did."""
    info = {"window_length": int(window_length), "labels": list(labels)}
    (Path(model_dir) / TRAINING_INFO).write_text(json.dumps(info) + "\n")


def training_window(model_dir: str | Path) -> int | None:
    """The window length a model was fine-tuned on, if its directory records it."""
    path = Path(model_dir) / TRAINING_INFO
    return json.loads(path.read_text())["window_length"] if path.exists() else None


def load_classifier(model_dir: str | Path, device: torch.device):
    """Load a fine-tuned model and its tokenizer, checking that they belong together."""
    from transformers import AutoModelForSequenceClassification

    import dnalm.models  # noqa: F401  (registers the architectures with the Auto classes)
    from dnalm.tokenization import load_tokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    if not (model_dir / "tokenizer.json").exists():
        raise FileNotFoundError(
            f"{model_dir} has no tokenizer.json: save the tokenizer the model was trained with beside it"
        )
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).to(device).eval()
    tokenizer = load_tokenizer(model_dir)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"tokenizer in {model_dir} has {len(tokenizer)} tokens but the model embeds only "
            f"{model.config.vocab_size}: model and tokenizer do not belong together"
        )
    return model, tokenizer


def _window_batches(
    fasta: str | Path, window: int, stride: int, batch_size: int
) -> Iterator[list[tuple[str, int, int, int, str]]]:
    """Batches of (record, record_length, start, end, sequence) across records."""
    batch = []
    for record, seq in read_fasta(fasta):
        for start, end in record_windows(len(seq), window, stride):
            batch.append((record, len(seq), start, end, seq[start:end]))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


@torch.no_grad()
def predict_fasta(
    model,
    tokenizer,
    fasta: str | Path,
    out_records: str | Path,
    *,
    window: int,
    stride: int,
    batch_size: int = 64,
    device: torch.device | None = None,
    out_windows: str | Path | None = None,
    progress: bool = True,
) -> int:
    """Write per-record (and optionally per-window) probabilities; returns the record count."""
    from tqdm import tqdm

    device = device or torch.device("cpu")
    encoder = encoder_for(tokenizer)
    pad = encoder.pad_id
    # a record shorter than one k-mer has no token; it is read as a single [UNK]
    unknown = np.array([encoder.unk_id])
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    positive = labels[1] if len(labels) > 1 else labels[0]
    rec_cols = [
        "record",
        "length",
        "windows",
        "predicted",
        *(f"prob_{x}" for x in labels),
        f"max_{positive}",
        f"weighted_{positive}",
    ]
    win_cols = ["record", "start", "end", *(f"prob_{x}" for x in labels)]
    out_records = Path(out_records)
    tmp_records = out_records.with_name(out_records.name + ".tmp")
    tmp_windows = Path(str(out_windows) + ".tmp") if out_windows else None
    n_records = 0
    current: dict | None = None

    def flush(rec, rw):
        nonlocal n_records
        probs, weights = np.array(rec["probs"]), np.array(rec["weights"], dtype=float)
        mean = probs.mean(axis=0)
        pos = probs[:, labels.index(positive)]
        rw.writerow(
            [
                rec["record"],
                rec["length"],
                len(probs),
                labels[int(mean.argmax())],
                *(f"{p:.6f}" for p in mean),
                f"{pos.max():.6f}",
                f"{np.average(pos, weights=weights):.6f}",
            ]
        )
        n_records += 1

    try:
        with contextlib.ExitStack() as files:
            rw = csv.writer(files.enter_context(open(tmp_records, "w", newline="")), delimiter="\t")
            rw.writerow(rec_cols)
            ww = None
            if tmp_windows:
                ww = csv.writer(
                    files.enter_context(open(tmp_windows, "w", newline="")), delimiter="\t"
                )
                ww.writerow(win_cols)
            bar = tqdm(desc="windows", unit="win", disable=not progress, mininterval=2)
            for batch in _window_batches(fasta, window, stride, batch_size):
                encoded = [
                    e if len(e) else unknown for e in encoder.encode_many([w[-1] for w in batch])
                ]
                width = max(len(e) for e in encoded)
                ids = np.full((len(batch), width), pad, dtype=np.int64)
                mask = np.zeros_like(ids)
                for j, e in enumerate(encoded):
                    ids[j, : len(e)] = e
                    mask[j, : len(e)] = 1
                with autocast(device):
                    logits = model(
                        input_ids=torch.from_numpy(ids).to(device),
                        attention_mask=torch.from_numpy(mask).to(device),
                    ).logits
                probs = torch.softmax(logits.float(), -1).cpu().numpy()
                for (record, length, start, end, _), p in zip(batch, probs, strict=True):
                    if current is None or current["record"] != record:
                        if current is not None:
                            flush(current, rw)
                        current = {
                            "record": record,
                            "length": length,
                            "probs": [],
                            "weights": [],
                            "covered": 0,
                        }
                    current["probs"].append(p)
                    current["weights"].append(max(1, end - max(start, current["covered"])))
                    current["covered"] = end
                    if ww:
                        ww.writerow([record, start, end, *(f"{x:.6f}" for x in p)])
                bar.update(len(batch))
            if current is not None:
                flush(current, rw)
            bar.close()
        tmp_records.replace(out_records)
        if tmp_windows:
            tmp_windows.replace(out_windows)
    finally:
        tmp_records.unlink(missing_ok=True)
        if tmp_windows:
            tmp_windows.unlink(missing_ok=True)
    return n_records
