"""Key maps: from a checkpoint's published tensor names to our modules' parameter names.

A KeyMap is data: an ordered list of entries (published name, our name, optional
reversible transform), plus aliases (older spellings of a published name that mean the
same tensor) and ignored names (tensors that are in published files but are not weights
of the model: buffers, schedules, EMA copies), each with its reason. The tables for each
architecture are built in keymaps.py.

Loading a checkpoint through a map is all or nothing: every entry must be present, every
name in the file must be an entry, an alias or ignored, and every tensor must have the
shape the module expects. Otherwise CheckpointError names the offending keys.
"""
import re

import torch


class CheckpointError(Exception):
    def __init__(self, source, what, missing=(), unexpected=(), misshaped=()):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.misshaped = list(misshaped)
        lines = [f"{source}: not a {what} checkpoint of this configuration:"]
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                lines.append(f"  {label} ({len(items)}): " + _some(items))
        if self.misshaped:
            shown = [f"{n} is {list(got)}, expected {list(want)}" for n, got, want in self.misshaped]
            lines.append(f"  mis-shaped ({len(shown)}): " + _some(shown))
        super().__init__("\n".join(lines))


def _some(items, limit=12):
    head = ", ".join(items[:limit])
    return head + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


class Transform:
    """A reversible change of layout between the published tensor and ours."""

    def __init__(self, name, forward, inverse, shape):
        self.name, self.forward, self.inverse, self.shape = name, forward, inverse, shape


# LDM stores the VAE's attention projections as 1x1 convolutions; ours are linear layers
CONV1X1_TO_LINEAR = Transform(
    "conv1x1_to_linear",
    forward=lambda t: t[:, :, 0, 0] if t.dim() == 4 else t,
    inverse=lambda t: t[:, :, None, None],
    shape=lambda s: tuple(s[:2]) if len(s) == 4 and tuple(s[2:]) == (1, 1) else tuple(s),
)


class Entry:
    __slots__ = ("published", "ours", "transform")

    def __init__(self, published, ours, transform=None):
        self.published, self.ours, self.transform = published, ours, transform


class KeyMap:
    def __init__(self, what, entries, aliases=(), ignored=()):
        """what: a name for errors ("UNet (diffusers layout)"); entries: Entry list, in
        table order; aliases: (older published name, published name) pairs; ignored:
        (regex over published names, reason) pairs."""
        self.what = what
        self.entries = list(entries)
        self.by_published = {}
        self.by_ours = {}
        for e in self.entries:
            if e.published in self.by_published or e.ours in self.by_ours:
                raise ValueError(f"{what}: duplicate entry {e.published} -> {e.ours}")
            self.by_published[e.published] = e
            self.by_ours[e.ours] = e
        self.aliases = dict(aliases)
        self.ignored = [(re.compile(p), why) for p, why in ignored]

    def prefixed(self, published_prefix, ours_prefix, what=None):
        """The same map one level down (a component inside a bigger file or module)."""
        return KeyMap(
            what or self.what,
            [Entry(published_prefix + e.published, ours_prefix + e.ours, e.transform) for e in self.entries],
            [(published_prefix + a, published_prefix + p) for a, p in self.aliases.items()],
            [(_prefix_regex(published_prefix, r.pattern), why) for r, why in self.ignored],
        )

    def why_ignored(self, name):
        for r, why in self.ignored:
            if r.search(name):
                return why
        return None

    def resolve(self, ckpt, expected_shapes):
        """Match every name of `ckpt` to an entry; check coverage and shapes.
        Returns {our name: (published name in the file, entry)}."""
        found = {}
        unexpected = []
        for name in ckpt.names():
            canonical = self.aliases.get(name, name)
            e = self.by_published.get(canonical)
            if e is None:
                if self.why_ignored(name) is None:
                    unexpected.append(name)
                continue
            if e.ours in found:
                unexpected.append(f"{name} (a second copy of {found[e.ours][0]})")
                continue
            found[e.ours] = (name, e)
        missing = [e.published for e in self.entries if e.ours not in found]
        misshaped = []
        for ours, (name, e) in found.items():
            got = tuple(ckpt.shape(name))
            ours_shape = e.transform.shape(got) if e.transform else got
            want = tuple(expected_shapes[ours])
            if ours_shape != want:
                misshaped.append((name, got, want))
        if missing or unexpected or misshaped:
            raise CheckpointError(ckpt.path, self.what, missing, unexpected, misshaped)
        return found

    def load(self, ckpt, module, prefix=""):
        """Copy the checkpoint's tensors into `module` (in place, as float32), after
        resolve() has accepted it. Returns the set of our names it filled."""
        params = module.state_dict()
        expected = {k[len(prefix):]: v.shape for k, v in params.items() if k.startswith(prefix)}
        for e in self.entries:
            if e.ours not in expected:
                raise ValueError(f"{self.what}: table entry {e.published} -> {e.ours} is not a parameter of {type(module).__name__}")
        found = self.resolve(ckpt, expected)
        with torch.no_grad():
            for ours, (name, e) in found.items():
                t = ckpt.get(name)
                if e.transform:
                    t = e.transform.forward(t)
                params[prefix + ours].copy_(t.to(params[prefix + ours].dtype))
        return {prefix + o for o in found}

    def to_published(self, state_dict):
        """Our tensors under their published names (for writing checkpoints in tests)."""
        out = {}
        for e in self.entries:
            t = state_dict[e.ours]
            out[e.published] = e.transform.inverse(t) if e.transform else t
        return out


def _prefix_regex(prefix, pattern):
    if pattern.startswith("^"):
        return "^" + re.escape(prefix) + pattern[1:]
    return "^" + re.escape(prefix) + ".*" + pattern


def check_complete(module, filled, what):
    """After all sources are loaded: every parameter got a value (a table bug otherwise)."""
    left = [k for k in module.state_dict() if k not in filled]
    if left:
        raise AssertionError(f"{what}: parameters no table fills: {left[:8]}")
