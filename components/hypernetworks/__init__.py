"""Hypernetwork components (role ``hypernetwork``): HyperCRL."""
