"""Built-in components, one subpackage per role; installed as ``l2rl.components``."""
