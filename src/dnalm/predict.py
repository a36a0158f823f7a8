"""Classify any FASTA with a fine-tuned model: per-window and per-record class probabilities.

The FASTA (plain, gzip or bgzip; GenBank too) is streamed: a record is read in ~1 MiB chunks,
checked as strictly as `dnalm.fasta.read_fasta` (errors name file, record, line, column and base
position), and cut into windows of the model's training length as the chunks arrive, so at most
one window plus one chunk of a record is held, however long it is. Windows of consecutive records
share batches. The last window of a record is moved back to end at the record's end; a record
shorter than a window is one shorter window. Windows are measured in bases and encoded by the
model's own tokenizer (any kind, through `encoder_for`), then right-padded with [PAD] to the
longest window of the batch in tokens. Rows are appended to temporary files as each record
finishes and moved into place at the end, so a failed run leaves no output.

Per record, with p_w the probability of window w and P = the positive class (label id 1):
- `prob_<label>` = mean over windows of p_w(label); `predicted` is its argmax;
- `max_<P>` = max over windows of p_w(P): flags a short viral island in a long host contig;
- `weighted_<P>` = sum_w b_w p_w(P) / sum_w b_w, where b_w is the number of bases window w adds
  to the record's coverage (all of them for non-overlapping windows; only the new tail bases of
  the end window, or with stride < window), so every base of the record counts exactly once and
  the score is a per-base (length-weighted) average. With stride >= window and a record that is a
  multiple of the window it equals the mean.
Aggregation keeps running sums only; the one per-record state kept for the whole file is an
8-byte hash of each record id, to reject duplicate ids.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnalm.fasta import (
    _GZIP_ERRORS,
    FastaFormatError,
    _iter_lines,
    _open_binary,
    _record_id,
    check_sequence_lines,
    gzip_error,
    no_records_error,
    preamble_error,
    read_fasta,
    sequence_format,
)
from dnalm.files import atomic_paths
from dnalm.model_dir import model_max_tokens
from dnalm.runtime import autocast
from dnalm.tokenization import encoder_for

_CHUNK_BASES = 1 << 18  # bases validated and windowed per step of a long record


def record_windows(length: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) windows covering a record of `length` bases, the last one flush with its end."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


# --------------------------------------------------------------------------- streaming


@dataclass
class Window:
    """One window of a record; `length` (the record's) is set on its last window only."""

    record: str
    start: int
    end: int
    seq: bytes
    length: int | None = None


class _RecordWindower:
    """Cuts one record into windows as its bases arrive, keeping only what later windows need."""

    def __init__(self, record: str, window: int, stride: int) -> None:
        self.record, self.window, self.stride = record, window, stride
        self.buf = bytearray()
        self.offset = 0  # record position of buf[0]
        self.total = 0
        self.next_start = 0
        self.held: Window | None = None  # emitted one step late, so the last one can be marked

    def _emit(self, start: int, end: int) -> Iterator[Window]:
        win = Window(
            self.record, start, end, bytes(self.buf[start - self.offset : end - self.offset])
        )
        if self.held is not None:
            yield self.held
        self.held = win

    def add(self, bases: bytes) -> Iterator[Window]:
        self.buf += bases
        self.total += len(bases)
        while self.next_start + self.window <= self.total:
            yield from self._emit(self.next_start, self.next_start + self.window)
            self.next_start += self.stride
        keep = min(self.next_start, max(0, self.total - self.window))
        if keep > self.offset:
            del self.buf[: keep - self.offset]
            self.offset = keep

    def finish(self) -> Iterator[Window]:
        if self.held is None:
            yield from self._emit(0, self.total)  # shorter than one window
        elif self.held.end < self.total:
            yield from self._emit(self.total - self.window, self.total)
        self.held.length = self.total
        yield self.held


def stream_windows(
    fasta: str | Path, window: int, stride: int, *, chunk_bases: int = _CHUNK_BASES
) -> Iterator[Window]:
    """Windows of every record of a FASTA, read in chunks of about `chunk_bases` bases, so
    memory is about one window plus one chunk whatever the record lengths."""
    if window < 1 or stride < 1:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    path = Path(fasta)
    seen: set[int] = set()

    def check_id(record: str, line: int | None) -> None:
        key = int.from_bytes(hashlib.blake2b(record.encode(), digest_size=8).digest(), "little")
        if key in seen:
            raise FastaFormatError(
                path, f"duplicate record id {record!r}; rename one", record=record, line=line
            )
        seen.add(key)

    if sequence_format(path) == "genbank":  # GenBank records are small; read_fasta checks them
        for record, seq in read_fasta(path):
            check_id(record, None)
            windower = _RecordWindower(record, window, stride)
            yield from windower.add(seq.encode("ascii"))
            yield from windower.finish()
        return

    windower: _RecordWindower | None = None
    header_line = line_no = pending_bases = 0
    pending: list[bytes] = []
    pending_first = 0

    def flush_pending() -> Iterator[Window]:
        nonlocal pending, pending_bases
        if pending:
            seq = check_sequence_lines(
                path, windower.record, pending, pending_first, windower.total
            )
            pending, pending_bases = [], 0
            yield from windower.add(seq)

    def finish_record() -> Iterator[Window]:
        yield from flush_pending()
        if windower.total == 0:
            raise FastaFormatError(
                path,
                "record has a header but no sequence; add its sequence or remove the header",
                record=windower.record,
                line=header_line,
            )
        yield from windower.finish()

    with _open_binary(path) as fh:
        try:
            for line_no, raw in enumerate(_iter_lines(fh), start=1):
                if raw[:1] == b">":
                    if windower is not None:
                        yield from finish_record()
                    record = _record_id(path, raw, line_no)
                    check_id(record, line_no)
                    windower = _RecordWindower(record, window, stride)
                    header_line = line_no
                    continue
                line = raw.rstrip()
                if windower is None:
                    if line.strip():
                        raise preamble_error(path, line_no)
                    continue
                if not pending:
                    pending_first = line_no
                pending.append(line)
                pending_bases += len(line)
                if pending_bases >= chunk_bases:
                    yield from flush_pending()
        except _GZIP_ERRORS as exc:
            record = windower.record if windower else None
            raise gzip_error(path, exc, record, line_no + 1) from exc
    if windower is None:
        raise no_records_error(path)
    yield from finish_record()


# --------------------------------------------------------------------------- prediction


class _Progress:
    """A tqdm bar on stderr for people, or a log line every `every` seconds for job logs."""

    def __init__(self, enabled: bool, log: logging.Logger | None, every: float = 30.0) -> None:
        from tqdm import tqdm

        self.log, self.every = log, every
        self.bar = tqdm(
            desc="predict", unit="bp", unit_scale=True, disable=not enabled, mininterval=1
        )
        self.records = self.bases = self.windows = 0
        self.t0 = self.last = time.perf_counter()

    def record_done(self, length: int) -> None:
        self.records += 1
        self.bases += length
        self.bar.update(length)
        self.bar.set_postfix(records=self.records, refresh=False)
        now = time.perf_counter()
        if self.log and now - self.last >= self.every:
            self.last = now
            self._log_line(now)

    def _log_line(self, now: float) -> None:
        dt = max(now - self.t0, 1e-9)
        self.log.info(
            "%d records, %.3f Mbp, %d windows in %.0f s (%.1f records/s, %.3f Mbp/s)",
            self.records,
            self.bases / 1e6,
            self.windows,
            dt,
            self.records / dt,
            self.bases / 1e6 / dt,
        )

    def close(self) -> None:
        self.bar.close()
        if self.log:
            self._log_line(time.perf_counter())


def sequence_windows(record: str, seq: bytes, window: int, stride: int) -> Iterator[Window]:
    """The windows of one sequence held in memory (a table row), cut as `stream_windows` cuts
    a FASTA record: the last window flush with the end, the last one carrying the length."""
    windower = _RecordWindower(record, window, stride)
    yield from windower.add(seq)
    yield from windower.finish()


def batches(windows: Iterator[Window], size: int) -> Iterator[list[Window]]:
    """Consecutive windows in lists of `size` (windows of several records share a batch)."""
    batch: list[Window] = []
    for w in windows:
        batch.append(w)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_windows(
    encoder, batch: list[Window], max_tokens: int | None, source: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) of a batch of windows, right-padded with [PAD] to its longest window in
    tokens; a window with no token (shorter than one k-mer) is one [UNK]. A window longer than
    the model accepts fails, naming it."""
    unknown = np.array([encoder.unk_id])
    encoded = [e if len(e) else unknown for e in encoder.encode_many([w.seq for w in batch])]
    width = max(len(e) for e in encoded)
    if max_tokens and width > max_tokens:
        w = batch[max(range(len(batch)), key=lambda j: len(encoded[j]))]
        raise ValueError(
            f"{source}, record {w.record!r}, window {w.start}-{w.end}: {width} tokens, "
            f"more than the model's {max_tokens}; use a shorter --window"
        )
    ids = np.full((len(batch), width), encoder.pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for j, e in enumerate(encoded):
        ids[j, : len(e)] = e
        mask[j, : len(e)] = 1
    return ids, mask


def max_window_tokens(encoder, window: int) -> int | None:
    """Tokens of a full window for fixed-rate tokenizers (None for bpe: only known per window)."""
    if encoder.kind == "char":
        return window
    if encoder.kind == "kmer":
        return (window - encoder.k) // encoder.stride + 1 if window >= encoder.k else 1
    return None


@torch.inference_mode()
def predict_fasta(
    model,
    tokenizer,
    fasta: str | Path,
    out_records: str | Path,
    *,
    window: int,
    stride: int,
    batch_size: int = 64,
    max_batch_tokens: int = 1 << 16,
    device: torch.device | None = None,
    out_windows: str | Path | None = None,
    out_bed: str | Path | None = None,
    progress: bool = True,
    log: logging.Logger | None = None,
) -> int:
    """Write per-record (and optionally per-window TSV and BED) probabilities; returns the
    record count. See the module docstring for the scores.

    A batch holds at most `batch_size` windows and, past one window, at most `max_batch_tokens`
    tokens (64 windows of 1,024 tokens by default): with 1M-token windows, one window at a time.
    Runs under `torch.inference_mode`.
    """
    device = device or torch.device("cpu")
    encoder = encoder_for(tokenizer)
    max_tokens = model_max_tokens(model)
    need = max_window_tokens(encoder, window)
    if max_tokens and need and need > max_tokens:
        raise ValueError(
            f"window of {window} bases is {need} {encoder.kind} tokens but the model accepts at "
            f"most {max_tokens}: use a window of at most the model's training length"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    batch_size = max(1, min(batch_size, max_batch_tokens // (need or window)))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    pos_index = 1 if len(labels) > 1 else 0
    positive = labels[pos_index]
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
    finals = [p for p in (out_records, out_windows, out_bed) if p]
    n_records = 0
    acc: dict = {}
    # the files close (ExitStack) before atomic_paths moves them into place
    with atomic_paths(*finals) as temps, contextlib.ExitStack() as files:
        handles = [files.enter_context(open(t, "w", newline="")) for t in temps]
        rw = csv.writer(handles[0], delimiter="\t", lineterminator="\n")
        rw.writerow(rec_cols)
        ww = bed = None
        rest = handles[1:]
        if out_windows:
            ww = csv.writer(rest.pop(0), delimiter="\t", lineterminator="\n")
            ww.writerow(win_cols)
        if out_bed:
            bed = rest.pop(0)
        bar = files.enter_context(contextlib.closing(_Progress(progress, log)))
        for batch in batches(stream_windows(fasta, window, stride), batch_size):
            ids, mask = encode_windows(encoder, batch, max_tokens, fasta)
            with autocast(device):
                logits = model(
                    input_ids=torch.from_numpy(ids).to(device),
                    attention_mask=torch.from_numpy(mask).to(device),
                ).logits
            probs = torch.softmax(logits.float(), -1).cpu().numpy().astype(np.float64)
            bar.windows += len(batch)
            for w, p in zip(batch, probs, strict=True):
                if not acc:
                    acc.update(n=0, sum=np.zeros(len(labels)), max=0.0, wsum=0.0, wt=0, cov=0)
                pp = float(p[pos_index])
                weight = w.end - max(w.start, acc["cov"])
                acc["n"] += 1
                acc["sum"] += p
                acc["max"] = max(acc["max"], pp)
                acc["wsum"] += weight * pp
                acc["wt"] += weight
                acc["cov"] = w.end
                if ww:
                    ww.writerow([w.record, w.start, w.end, *(f"{x:.6f}" for x in p)])
                if bed:
                    score = min(1000, max(0, round(pp * 1000)))
                    name = labels[int(p.argmax())]
                    bed.write(f"{w.record}\t{w.start}\t{w.end}\t{name}\t{score}\t.\n")
                if w.length is not None:  # the record's last window
                    mean = acc["sum"] / acc["n"]
                    rw.writerow(
                        [
                            w.record,
                            w.length,
                            acc["n"],
                            labels[int(mean.argmax())],
                            *(f"{x:.6f}" for x in mean),
                            f"{acc['max']:.6f}",
                            f"{acc['wsum'] / acc['wt']:.6f}",
                        ]
                    )
                    n_records += 1
                    bar.record_done(w.length)
                    acc = {}
    return n_records
