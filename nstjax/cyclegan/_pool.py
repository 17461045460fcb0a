"""The history of generated images the discriminators train on (Shrivastava et al. 2017), as arrays.

The authors' ``ImagePool`` is a Python list and ``random`` calls. Here the pool
is a fixed-size array inside the jitted train state, with the count of images
stored so far; the random draws come from a JAX key the train state carries.
So the pool is checkpointed with everything else and a resumed run draws
exactly what an uninterrupted one would.

Rule (the authors', image by image, in batch order): while the pool holds fewer
than ``size`` images, the new image is stored and returned. Once it is full,
with probability 1/2 a uniformly drawn stored image is returned and replaced by
the new one; otherwise the new image is returned.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

__all__ = ["ImagePool", "init_pool", "pool_draws", "query_pool"]


@flax.struct.dataclass
class ImagePool:
    """images: float32 [size, H, W, C] (the first ``count`` are filled); count: int32 scalar."""

    images: jax.Array
    count: jax.Array

    @property
    def size(self) -> int:
        return self.images.shape[0]


def init_pool(size: int, image_shape: tuple[int, int, int]) -> ImagePool:
    """An empty pool of ``size`` images of ``image_shape`` (H, W, C)."""
    return ImagePool(images=jnp.zeros((size, *image_shape), jnp.float32), count=jnp.zeros((), jnp.int32))


def pool_draws(key: jax.Array, batch: int, size: int) -> tuple[jax.Array, jax.Array]:
    """The random numbers one query uses: (uniform [batch] in [0, 1), slot [batch] in [0, size))."""
    k_swap, k_slot = jax.random.split(key)
    return jax.random.uniform(k_swap, (batch,)), jax.random.randint(k_slot, (batch,), 0, max(size, 1))


def query_pool(pool: ImagePool, images: jax.Array, key: jax.Array) -> tuple[ImagePool, jax.Array]:
    """(updated pool, images for the discriminator): ``images`` [B, H, W, C], the new fakes.

    A pool of size 0 returns ``images`` unchanged. The draws are :func:`pool_draws`'s.
    """
    if pool.size == 0:
        return pool, images
    uniform, slots = pool_draws(key, images.shape[0], pool.size)
    images = jax.lax.stop_gradient(images).astype(jnp.float32)

    def one(carry, inputs):
        stored, count = carry
        image, u, slot = inputs
        filling = count < pool.size
        swap = jnp.logical_and(~filling, u > 0.5)
        index = jnp.where(filling, count, slot)
        old = stored[index]
        out = jnp.where(swap, old, image)
        write = jnp.logical_or(filling, swap)
        stored = stored.at[index].set(jnp.where(write, image, old))
        return (stored, count + filling.astype(jnp.int32)), out

    (stored, count), out = jax.lax.scan(one, (pool.images, pool.count), (images, uniform, slots))
    return ImagePool(images=stored, count=count), out
