"""GPT baseline for DNA: a small Llama-family decoder (RoPE, RMSNorm, SwiGLU, SDPA attention).

It reuses `transformers`' Llama implementation and only adds what the study needs: its own
`model_type` (so `Auto*` resolves it without `trust_remote_code`), DNA-sized defaults with
HyenaDNA's special-token ids, tied embeddings as in HyenaDNA, and a mean-pooling sequence
classifier that loads the `model.*` weights of a causal-LM checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutput

from .heads import classify


class DnaGPTConfig(LlamaConfig):
    r"""`LlamaConfig` with DNA-sized defaults; dropout 0, SDPA attention, tied embeddings."""

    model_type = "dnalm_gpt"

    vocab_size: int = 12
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 1024
    rms_norm_eps: float = 1e-5
    pad_token_id: int | None = 4
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 1
    tie_word_embeddings: bool = True
    use_cache: bool = False

    def __post_init__(self, **kwargs):
        kwargs.setdefault("attn_implementation", "sdpa")
        super().__post_init__(**kwargs)


class DnaGPTModel(LlamaModel):
    """The decoder stack (what `AutoModel` returns for a `dnalm_gpt` config)."""

    config_class = DnaGPTConfig


class DnaGPTForCausalLM(LlamaForCausalLM):
    """Next-token model; `labels` give the shifted cross-entropy (ignore index -100)."""

    config_class = DnaGPTConfig

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        kwargs.setdefault("use_cache", False)
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs
        )


class DnaGPTForSequenceClassification(LlamaPreTrainedModel):
    """Decoder + linear `score` head on the mean of the non-pad hidden states.

    The decoder sits at `self.model`, like in `DnaGPTForCausalLM`, so `from_pretrained` on a
    causal-LM checkpoint loads all of it and only initialises `score`.
    """

    config_class = DnaGPTConfig
    base_model_prefix = "model"

    def __init__(self, config: DnaGPTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LlamaModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Logits (batch, num_labels); with `labels`, cross-entropy (MSE if num_labels == 1)."""
        kwargs.setdefault("use_cache", False)
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return classify(self.score, outputs, attention_mask, labels, self.num_labels)


__all__ = [
    "DnaGPTConfig",
    "DnaGPTModel",
    "DnaGPTForCausalLM",
    "DnaGPTForSequenceClassification",
]
