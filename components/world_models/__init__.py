"""World-model components (role ``world_model``); so far the DreamerV3 building blocks."""
