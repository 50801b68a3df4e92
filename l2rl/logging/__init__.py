"""Run outputs: atomic files, evaluation records (JSONL) and TensorBoard scalars."""
