"""Seeded Gaussian noise, bit-compatible with the engine's generator
(gpu-runner/engine/noise.ts): xoshiro128** seeded through splitmix32 from
(seed, image, model), and Box-Muller in float64 rounded to float32. The control table
and the TypeScript eval therefore start every sample from the same noise.
"""
import math
import numpy as np

M32 = 0xFFFFFFFF


def _splitmix32(state):
    state = (state + 0x9E3779B9) & M32
    z = state
    z = ((z ^ (z >> 16)) * 0x85EBCA6B) & M32
    z = ((z ^ (z >> 13)) * 0xC2B2AE35) & M32
    return state, (z ^ (z >> 16)) & M32


def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


class Xoshiro128:
    def __init__(self, seed, image=0, model=0):
        st = (seed ^ ((image * 0x9E3779B1) & M32) ^ ((model * 0x85EBCA77) & M32)) & M32
        self.s = []
        for _ in range(4):
            st, v = _splitmix32(st)
            self.s.append(v)

    def next(self):
        s = self.s
        result = (_rotl((s[1] * 5) & M32, 7) * 9) & M32
        t = (s[1] << 9) & M32
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result


def gaussian(seed, image, model, n):
    """n standard normal float32 values."""
    rng = Xoshiro128(seed, image, model)
    out = np.empty(n, dtype=np.float32)
    i = 0
    while i < n:
        u1 = (rng.next() + 1.0) / 4294967296.0     # (0, 1]
        u2 = rng.next() / 4294967296.0             # [0, 1)
        r = math.sqrt(-2.0 * math.log(u1))
        out[i] = r * math.cos(2.0 * math.pi * u2)
        if i + 1 < n:
            out[i + 1] = r * math.sin(2.0 * math.pi * u2)
        i += 2
    return out


def latent_noise(seed, image, model, shape):
    import torch
    return torch.from_numpy(gaussian(seed, image, model, int(np.prod(shape))).reshape(shape))
