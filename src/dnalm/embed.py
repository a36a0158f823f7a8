"""Embed sequences with a model: one vector per sequence (or per window), written to parquet.

The vector of a window is the mean of the model's last hidden states over its non-pad tokens
(the final LayerNorm/RMSNorm applied, as the classification head sees them). A sequence longer
than the window is cut as `dnalm predict` cuts it (the last window flush with the end); its
vector is the mean of its windows' vectors weighted by the bases each window adds to the
sequence's coverage, so each base counts once, as predict's `weighted_` score. `per_window`
writes each window's own vector instead.

Input streams with constant memory, like prediction: a FASTA through `predict.stream_windows`,
a table (parquet, CSV or TSV, plain or gzip) in chunks of rows. Output rows are buffered and
written in parquet row groups (pyarrow's `ParquetWriter`) to a temporary file that replaces the
output only at the end. Columns: `id` (the record id, or the table's id column), `start`/`end`
(per window only), `label` (when the table has one) and `vector` (float32, fixed size).

The model is any dnalm model directory (fine-tuned classifier or pretrained LM, the backbone is
used) or an official HyenaDNA checkpoint (either layout, with dnalm's `char` tokenizer after
its vocabulary is checked), given as a directory or a Hub id (`dnalm.hub.resolve_model_dir`).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnalm.files import atomic_path
from dnalm.predict import (
    Window,
    _Progress,
    batches,
    encode_windows,
    sequence_windows,
    stream_windows,
)
from dnalm.runtime import autocast

__all__ = ["EmbeddingWriter", "embed", "load_embedder", "table_windows"]

DNALM_MODEL_TYPES = ("dnalm_hyena", "dnalm_gpt")
TABLE_CHUNK_ROWS = 4096
_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def load_embedder(model: str | Path, device: torch.device) -> tuple[torch.nn.Module, Any, Path]:
    """(backbone, tokenizer, model directory) for a dnalm model directory or an official
    HyenaDNA checkpoint, a directory or a Hub id; no code from the directory is run."""
    from dnalm.hub import resolve_model_dir
    from dnalm.hyenadna_config import check_vocabulary

    model_dir = resolve_model_dir(str(model))
    config_file = model_dir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type in DNALM_MODEL_TYPES:
        from transformers import AutoModel

        import dnalm.models  # noqa: F401  (registers the architectures with the Auto classes)
        from dnalm.model_dir import check_tokenizer
        from dnalm.tokenization import load_tokenizer

        backbone = AutoModel.from_pretrained(str(model_dir))
        tokenizer = load_tokenizer(model_dir)
        check_tokenizer(model_dir, backbone.config, tokenizer)
    else:
        from dnalm.models import load_hyenadna
        from dnalm.tokenization import char_tokenizer

        check_vocabulary(model_dir)
        backbone = load_hyenadna(model_dir).hyena
        tokenizer = char_tokenizer()
    return backbone.to(device).eval(), tokenizer, model_dir


def default_window(backbone, tokenizer, model_dir: Path) -> int:
    """The training window recorded beside a fine-tuned model, else (character tokens) the
    model's context."""
    from dnalm.model_dir import model_max_tokens, training_window
    from dnalm.tokenization import tokenizer_spec

    window = training_window(model_dir)
    if window:
        return int(window)
    if tokenizer_spec(tokenizer)["kind"] == "char" and model_max_tokens(backbone):
        return int(model_max_tokens(backbone))
    raise ValueError(f"{model_dir} records no window length: pass --window")


class EmbeddingWriter:
    """Rows of (id, [start, end], [label], vector) into parquet row groups."""

    def __init__(self, path: Path, *, per_window: bool, labelled: bool, rows_per_group: int):
        self.path, self.per_window, self.labelled = path, per_window, labelled
        self.rows_per_group = rows_per_group
        self.writer = None
        self.rows: dict[str, list] = self._empty()
        self.count = 0

    def _empty(self) -> dict[str, list]:
        columns = ["id"] + (["start", "end"] if self.per_window else [])
        columns += ["label"] if self.labelled else []
        return {c: [] for c in [*columns, "vector"]}

    def add(self, record: str, vector: np.ndarray, window: Window, label: str | None) -> None:
        self.rows["id"].append(record)
        if self.per_window:
            self.rows["start"].append(window.start)
            self.rows["end"].append(window.end)
        if self.labelled:
            self.rows["label"].append(label)
        self.rows["vector"].append(vector.astype(np.float32))
        self.count += 1
        if len(self.rows["id"]) >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows["id"]:
            return
        vectors = np.stack(self.rows["vector"])
        dim = vectors.shape[1]
        columns = {k: pa.array(v) for k, v in self.rows.items() if k != "vector"}
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
        table = pa.table(columns)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)
        self.rows = self._empty()

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


def _read_table_chunks(path: Path, columns: list[str]) -> Iterator[dict[str, list]]:
    """The table's rows in chunks of `TABLE_CHUNK_ROWS`: column -> list of Python values (not
    pandas columns, whose strings pandas 3 keeps in Arrow memory, out of Python's accounting)."""
    import pandas as pd

    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(path)
        missing = [c for c in columns if c not in handle.schema_arrow.names]
        if missing:
            raise ValueError(
                f"{path}: no column {missing[0]!r} (the table has: "
                f"{', '.join(handle.schema_arrow.names)})"
            )
        for batch in handle.iter_batches(batch_size=TABLE_CHUNK_ROWS, columns=columns):
            yield {c: batch.column(c).to_pylist() for c in columns}
        return
    delimiter = _DELIMITERS.get(Path(name).suffix.lower())
    if delimiter is None:
        raise ValueError(f"{path}: a table must be .parquet, .csv or .tsv (optionally .gz)")
    reader = pd.read_csv(
        path, sep=delimiter, dtype=str, keep_default_na=False, chunksize=TABLE_CHUNK_ROWS
    )
    with reader:
        for chunk in reader:
            missing = [c for c in columns if c not in chunk.columns]
            if missing:
                raise ValueError(
                    f"{path}: no column {missing[0]!r} (the table has: "
                    f"{', '.join(map(str, chunk.columns))})"
                )
            yield {c: chunk[c].tolist() for c in columns}


def table_columns(
    path: Path, sequence: str | None, ident: str | None, label: str | None
) -> tuple[str, str | None, str | None]:
    """(sequence, id or None, label or None) columns: the ones given, else the first present of
    sequence/seq, id/chrom (dnalm's window tables keep the id in chrom) and label."""
    import pandas as pd

    name = path.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        names = pq.ParquetFile(path).schema_arrow.names
    else:
        delimiter = _DELIMITERS.get(Path(name).suffix.lower(), ",")
        names = list(pd.read_csv(path, sep=delimiter, dtype=str, nrows=0).columns)

    def pick(given, choices):
        return given if given else next((c for c in choices if c in names), None)

    sequence = pick(sequence, ("sequence", "seq"))
    if sequence is None:
        raise ValueError(
            f"{path}: no sequence column (sequence or seq; the table has: {', '.join(names)}); "
            "name it with --sequence-column"
        )
    return sequence, pick(ident, ("id", "chrom")), pick(label, ("label",))


def table_windows(
    path: str | Path,
    window: int,
    stride: int,
    *,
    sequence_column: str,
    id_column: str | None,
    label_column: str | None,
    labels: collections.deque,
) -> Iterator[Window]:
    """Windows of every row of a table, read in chunks; each row's label is appended to
    `labels` as the row is read (the consumer takes it when the row's last window arrives)."""
    from dnalm.labelled import _INVALID, _RNA_TO_DNA, LabelledInputError

    path = Path(path)
    columns = [c for c in (sequence_column, id_column, label_column) if c]
    seen: set[int] = set()
    row = 0
    for chunk in _read_table_chunks(path, list(dict.fromkeys(columns))):
        for values in zip(*chunk.values(), strict=True):
            row += 1
            value = dict(zip(chunk, values, strict=True))
            record = str(value[id_column]).strip() if id_column else f"row{row}"
            line = row + (0 if path.name.removesuffix(".gz").endswith(".parquet") else 1)
            seq = "".join(str(value[sequence_column]).split()).translate(_RNA_TO_DNA)
            if not seq:
                raise LabelledInputError(path, "empty sequence", line=line, record=record)
            bad = _INVALID.search(seq)
            if bad:
                raise LabelledInputError(
                    path,
                    f"invalid character {bad.group()!r} at position {bad.start() + 1} of the "
                    "sequence (IUPAC nucleotide codes only)",
                    line=line,
                    record=record,
                    column=sequence_column,
                )
            key = int.from_bytes(hashlib.blake2b(record.encode(), digest_size=8).digest(), "little")
            if key in seen:
                raise LabelledInputError(
                    path, "duplicate id; ids name the embeddings", line=line, record=record
                )
            seen.add(key)
            labels.append(str(value[label_column]) if label_column else None)
            yield from sequence_windows(record, seq.encode("ascii"), window, stride)
    if row == 0:
        raise ValueError(f"{path}: no rows to embed")


@torch.no_grad()
def embed(
    backbone,
    tokenizer,
    out: str | Path,
    *,
    window: int,
    stride: int | None = None,
    fasta: str | Path | None = None,
    table: str | Path | None = None,
    sequence_column: str | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    per_window: bool = False,
    batch_size: int = 64,
    rows_per_group: int = 4096,
    device: torch.device | None = None,
    progress: bool = True,
    log: logging.Logger | None = None,
) -> int:
    """Write the embeddings of a FASTA or a table to `out` (parquet); returns the rows written.
    See the module docstring for what a vector is."""
    from dnalm.model_dir import model_max_tokens
    from dnalm.tokenization import encoder_for

    if (fasta is None) == (table is None):
        raise ValueError("give exactly one of a FASTA or a table to embed")
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch size ({batch_size}) and window ({window}) must be positive")
    device = device or torch.device("cpu")
    stride = stride or window
    encoder = encoder_for(tokenizer)
    max_tokens = model_max_tokens(backbone)
    labels: collections.deque = collections.deque()
    if fasta is not None:
        source, labelled = fasta, False
        windows = stream_windows(fasta, window, stride)
    else:
        source = table
        sequence_column, id_column, label_column = table_columns(
            Path(table), sequence_column, id_column, label_column
        )
        labelled = label_column is not None
        windows = table_windows(
            table,
            window,
            stride,
            sequence_column=sequence_column,
            id_column=id_column,
            label_column=label_column,
            labels=labels,
        )
    with atomic_path(out) as tmp:
        writer = EmbeddingWriter(
            tmp, per_window=per_window, labelled=labelled, rows_per_group=rows_per_group
        )
        bar = _Progress(progress, log)
        total, weight, covered = None, 0, 0
        try:
            for batch in batches(windows, batch_size):
                ids, mask = encode_windows(encoder, batch, max_tokens, source)
                mask_t = torch.from_numpy(mask).to(device)
                with autocast(device):
                    hidden = backbone(
                        input_ids=torch.from_numpy(ids).to(device), attention_mask=mask_t
                    ).last_hidden_state
                m = mask_t.unsqueeze(-1).float()
                pooled = ((hidden.float() * m).sum(1) / m.sum(1).clamp(min=1.0)).cpu().numpy()
                bar.windows += len(batch)
                for w, vector in zip(batch, pooled, strict=True):
                    label = labels[0] if labelled else None
                    if per_window:
                        writer.add(w.record, vector, w, label)
                    else:
                        added = w.end - max(w.start, covered)
                        total = vector * added if total is None else total + vector * added
                        weight, covered = weight + added, w.end
                    if w.length is None:
                        continue
                    if not per_window:
                        writer.add(w.record, total / max(weight, 1), w, label)
                        total, weight, covered = None, 0, 0
                    if labelled:
                        labels.popleft()
                    bar.record_done(w.length)
        finally:
            writer.close()
            bar.close()
    return writer.count
