"""What the classification heads of both architectures share: pooling and the loss.

One definition, so that `hyena` and `gpt` classifiers pool and score identically and a change to
either reaches both (the study compares the two architectures head to head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import SequenceClassifierOutput


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the sequence of the positions where `attention_mask` is 1 (all if None).

    Right padding then never dilutes a short sequence's representation.
    """
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_labels: int
) -> torch.Tensor:
    """Cross-entropy for `num_labels > 1`; mean squared error for a single regression output."""
    labels = labels.to(logits.device)
    if num_labels == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))


def classify(
    score: torch.nn.Module, outputs, attention_mask, labels, num_labels: int
) -> SequenceClassifierOutput:
    """The `score` head on the mean of the non-pad hidden states of a backbone's `outputs`; the
    loss too where there are `labels`."""
    logits = score(masked_mean(outputs.last_hidden_state, attention_mask))
    loss = classification_loss(logits, labels, num_labels) if labels is not None else None
    attentions = getattr(outputs, "attentions", None)
    return SequenceClassifierOutput(
        loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=attentions
    )


__all__ = ["classification_loss", "classify", "masked_mean"]
