"""nstjax: neural style transfer in JAX."""
