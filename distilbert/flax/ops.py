"""Mixed-precision contractions: low-precision inputs, float32 accumulation, forward *and* backward.

Under ``dtype=jnp.bfloat16`` the layers multiply bfloat16 operands with float32 accumulation
(``preferred_element_type=float32``): more accurate than bfloat16 outputs, and several times faster
on XLA:CPU, whose bf16 x bf16 -> f32 matmuls are its fast path. JAX's own transpose rule would run
the backward matmuls in float32 (the float32 cotangent promotes the bfloat16 operand); here the
cotangent is cast to the operands' dtype first, so the backward matmuls take the same fast path.
In float32 these are plain ``jnp.einsum`` / ``lax.dot_general``. Also the activation table.
"""

from __future__ import annotations

import functools
import string

import jax
import jax.numpy as jnp

ACTIVATIONS = {"gelu": functools.partial(jax.nn.gelu, approximate=False), "relu": jax.nn.relu}  # gelu: exact erf


def _low_precision(*arrays) -> bool:
    return any(jnp.dtype(a.dtype).itemsize < 4 for a in arrays)


def einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``jnp.einsum(spec, a, b)`` with a float32 result; for bf16/f16 inputs see the module docstring."""
    if not _low_precision(a, b):
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    dtype = jnp.promote_types(a.dtype, b.dtype)
    return _mixed_einsum(spec, a.astype(dtype), b.astype(dtype))


def _contract(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``einsum(spec, a, b)`` in float32 with the batch axes moved to the front of both operands: XLA:CPU
    has no bf16 x bf16 -> f32 kernel for some other batch layouts ("Unsupported element type for DotThunk")."""
    inputs, out = spec.split("->")
    sa, sb = inputs.split(",")
    batch = "".join(c for c in out if c in sa and c in sb)
    ta, tb = batch + "".join(c for c in sa if c not in batch), batch + "".join(c for c in sb if c not in batch)
    tout = batch + "".join(c for c in out if c not in batch)
    a, b = jnp.transpose(a, [sa.index(c) for c in ta]), jnp.transpose(b, [sb.index(c) for c in tb])
    result = jnp.einsum(f"{ta},{tb}->{tout}", a, b, preferred_element_type=jnp.float32)
    return jnp.transpose(result, [tout.index(c) for c in out])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _mixed_einsum(spec, a, b):
    return _contract(spec, a, b)


def _mixed_einsum_fwd(spec, a, b):
    return _mixed_einsum(spec, a, b), (a, b)


def _mixed_einsum_bwd(spec, residuals, g):
    a, b = residuals
    inputs, out = spec.split("->")
    sa, sb = inputs.split(",")
    g = g.astype(a.dtype)  # bf16 x bf16 -> f32: the fast, f32-accumulating matmul
    da = _contract(f"{out},{sb}->{sa}", g, b)
    db = _contract(f"{sa},{out}->{sb}", a, g)
    return da.astype(a.dtype), db.astype(b.dtype)


_mixed_einsum.defvjp(_mixed_einsum_fwd, _mixed_einsum_bwd)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """A ``lax.dot_general`` for ``nnx.Linear(dot_general=...)`` that goes through :func:`einsum` in bf16."""
    if not _low_precision(lhs, rhs):
        return jax.lax.dot_general(
            lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=preferred_element_type, **kwargs
        )
    (lc, rc), (lb, rb) = dimension_numbers
    letters = iter(string.ascii_letters)
    left = [next(letters) for _ in range(lhs.ndim)]
    right = [None] * rhs.ndim
    for i, j in zip(tuple(lc) + tuple(lb), tuple(rc) + tuple(rb)):
        right[j] = left[i]
    right = [r or next(letters) for r in right]
    out = [left[i] for i in lb] + [left[i] for i in range(lhs.ndim) if i not in lc and i not in lb]
    out += [right[j] for j in range(rhs.ndim) if j not in rc and j not in rb]
    return einsum(f"{''.join(left)},{''.join(right)}->{''.join(out)}", lhs, rhs)
