"""The GenomicBenchmarks baseline CNN (`cnn` in `dnalm.baselines`), apart because it alone needs
torch: the k-mer baseline's jobs start without it."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from logging import Logger

import numpy as np
import torch
from torch import nn

from dnalm.metrics import better, format_scores, scores_of


class GenomicBenchmarksCNN(nn.Module):
    """The GenomicBenchmarks baseline CNN shape, on dnalm's character ids."""

    def __init__(self, n_labels: int, input_len: int, vocab_size: int = 12, embedding: int = 100):
        super().__init__()
        self.input_len = max(input_len, 70)  # three conv + pool blocks need 70 bases
        self.embeddings = nn.Embedding(vocab_size, embedding)
        blocks, channels = [], embedding
        for out in (16, 8, 4):
            blocks += [nn.Conv1d(channels, out, kernel_size=8), nn.BatchNorm1d(out)]
            blocks += [nn.ReLU(), nn.MaxPool1d(2)]
            channels = out
        self.cnn = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, embedding, self.input_len)).shape[1]
        self.dense = nn.Sequential(nn.Linear(flat, 512), nn.ReLU(), nn.Linear(512, n_labels))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dense(self.cnn(self.embeddings(ids).transpose(1, 2)))


def char_ids(sequences: Sequence[bytes], length: int) -> np.ndarray:
    """HyenaDNA character ids (A=7 C=8 G=9 T=10 N=11, other bases [UNK]=6), right-padded with
    [PAD]=4 or cut to `length`."""
    table = np.full(256, 6, dtype=np.int64)
    for i, bases in enumerate(("Aa", "Cc", "Gg", "Tt", "Nn")):
        for b in bases:
            table[ord(b)] = 7 + i
    out = np.full((len(sequences), length), 4, dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids = table[np.frombuffer(seq[:length], dtype=np.uint8)]
        out[row, : len(ids)] = ids
    return out


@torch.no_grad()
def cnn_probs(model: GenomicBenchmarksCNN, ids: np.ndarray, batch_size: int) -> np.ndarray:
    model.eval()
    out = [
        torch.softmax(model(torch.from_numpy(ids[i : i + batch_size])), -1).numpy()
        for i in range(0, len(ids), batch_size)
    ]
    model.train()
    return np.concatenate(out).astype(np.float64)


def fit_cnn(
    train: tuple[list, np.ndarray],
    val: tuple[list, np.ndarray],
    *,
    n_labels: int,
    epochs: int,
    batch_size: int,
    lr: float,
    select_on: str,
    seed: int,
    log: Logger,
):
    """Train the CNN for `epochs`, keeping the epoch that scores best on val; returns (predict,
    val scores, best epoch, number of parameters)."""
    length = max(len(s) for s in train[0])
    x_train, y_train = char_ids(train[0], length), torch.tensor(np.asarray(train[1]))
    x_val = char_ids(val[0], length)
    torch.manual_seed(seed)
    model = GenomicBenchmarksCNN(n_labels, length)
    x_train, x_val = (
        np.pad(x, ((0, 0), (0, model.input_len - length)), constant_values=4)
        for x in (x_train, x_val)
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order_rng = np.random.default_rng(seed)
    best = None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        for rows in np.array_split(
            order_rng.permutation(len(x_train)), max(1, len(x_train) // batch_size)
        ):
            if len(rows) < 2:  # batch norm needs two rows
                continue
            loss = nn.functional.cross_entropy(
                model(torch.from_numpy(x_train[rows])), y_train[rows]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        scores = scores_of(val[1], cnn_probs(model, x_val, 256))
        log.info(
            f"cnn epoch {epoch}/{epochs}: val {format_scores(scores)} ({time.perf_counter() - started:.1f} s)"
        )
        if best is None or better(scores, best[1], select_on):
            best = (copy.deepcopy(model.state_dict()), scores, epoch)
    state, scores, epoch = best
    model.load_state_dict(state)

    def predict(seqs: Sequence[bytes]) -> np.ndarray:
        ids = char_ids(seqs, model.input_len)
        return cnn_probs(model, ids, 256)

    return predict, scores, epoch, sum(p.numel() for p in model.parameters())
