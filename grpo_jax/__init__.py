"""grpo_jax: GRPO for Nemotron-H on multi-turn tool use, in JAX/Flax."""
