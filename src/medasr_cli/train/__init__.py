"""Fine-tuning and from-scratch training of FastConformer-TDT models with NeMo."""
