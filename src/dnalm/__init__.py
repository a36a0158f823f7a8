"""dnalm: pretrained vs scratch DNA language models."""
