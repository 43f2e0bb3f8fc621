"""The Merkle tree of Certificate Transparency (RFC 6962 §2.1, restated in RFC 9162 §2.1).

We use CT's tree unchanged so that its published test vectors, and any CT tool, check our
heads and proofs. Leaves are hashed as SHA-256(0x00 || bytes), interior nodes as
SHA-256(0x01 || left || right): the prefixes keep a leaf from passing for a node. The tree of
n leaves splits at the largest power of two below n, so its shape depends only on n and a
tree only ever grows on its right edge.

Everything here is pure. Proofs are generated from a `LeafHashes` callable that serves the
recorded leaf hashes of a range, so a store can page them out of a table; they are checked by
pure predicates that need nothing but the proof, the sizes and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LeafHashes",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_root",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256().digest()
"""MTH({}) = SHA-256 of the empty string (RFC 6962 §2.1)."""

PAGE = 16_384
"""Leaves read at a time: their hashes, and in verification their events too (~12 MiB of
700-byte events), so memory stays flat and small whatever the log's length."""

LeafHashes = Callable[[int, int], Sequence[bytes]]
"""`leaf_hashes(start, stop)`: the recorded hashes of leaves start..stop-1, in order."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one stored event."""
    # Concatenating is faster than copying a primed hasher: one call instead of three.
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


class TreeBuilder:
    """A tree that grows one leaf at a time, keeping only its right edge.

    The frontier holds the roots of the perfect subtrees that the binary digits of `size`
    decompose the tree into, largest first: O(log n) hashes, so a writer extends the tree a
    batch at a time and a verifier streams any number of leaves in constant memory. The
    root folds the frontier from the right, which is exactly RFC 6962's MTH.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        if size < 0 or len(frontier) != size.bit_count():
            raise ValueError(
                f"a tree of {size} leaves has a frontier of {max(size, 0).bit_count()} hashes, "
                f"not {len(frontier)}"
            )
        if any(len(item) != HASH_SIZE for item in frontier):
            raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes")
        self._size = size
        self._frontier = list(frontier)

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: LeafHashes, size: int) -> TreeBuilder:
        """The builder of the first `size` recorded leaves (e.g. a writer resuming)."""
        builder = cls()
        for start in range(0, size, PAGE):
            builder.extend_hashes(_page(leaf_hashes, start, min(start + PAGE, size)))
        return builder

    @property
    def size(self) -> int:
        """How many leaves the tree holds."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """The right edge, to persist beside a head so a writer can resume without rehashing."""
        return tuple(self._frontier)

    def append(self, data: bytes) -> bytes:
        """Add one stored event as the next leaf; returns its leaf hash."""
        hashed = leaf_hash(data)
        self.append_hash(hashed)
        return hashed

    def append_hash(self, hashed: bytes) -> None:
        """Add the next leaf by its leaf hash."""
        frontier = self._frontier
        size = self._size
        # Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
        while size & 1:
            hashed = _sha256(b"\x01" + frontier.pop() + hashed).digest()
            size >>= 1
        frontier.append(hashed)
        self._size += 1

    def extend_hashes(self, hashes: Iterable[bytes]) -> None:
        """Add leaves by their leaf hashes, in order (the verify loop).

        A run of 2**k leaves starting at a multiple of 2**k is a perfect subtree: its root is
        hashed level by level (one list comprehension a level, half the Python work of adding
        its leaves one by one), then joined to the right edge as one node of height k. The
        same nodes are hashed, so the tree is the same."""
        pending = hashes if isinstance(hashes, list) else list(hashes)
        frontier = self._frontier
        size = self._size
        sha256 = _sha256
        start, stop = 0, len(pending)
        while start < stop:
            # The largest perfect subtree that can start at `size` and fits what is left.
            height = (stop - start).bit_length() - 1
            if size:
                height = min(height, (size & -size).bit_length() - 1)
            level = pending[start : start + (1 << height)]
            while len(level) > 1:
                level = [
                    sha256(b"\x01" + left + right).digest()
                    for left, right in zip(level[0::2], level[1::2], strict=True)
                ]
            hashed = level[0]
            bits = size >> height
            while bits & 1:
                hashed = sha256(b"\x01" + frontier.pop() + hashed).digest()
                bits >>= 1
            frontier.append(hashed)
            size += 1 << height
            start += 1 << height
        self._size = size

    def root(self) -> bytes:
        """MTH of the leaves so far (the empty tree's root when there are none)."""
        if not self._frontier:
            return EMPTY_ROOT
        frontier = self._frontier
        root = frontier[-1]
        for left in reversed(frontier[:-1]):
            root = _sha256(b"\x01" + left + root).digest()
        return root


def range_root(leaf_hashes: LeafHashes, start: int, stop: int) -> bytes:
    """MTH(D[start:stop]), reading the leaf hashes a page at a time."""
    if not 0 <= start <= stop:
        raise ValueError(f"bad leaf range {start}..{stop}")
    builder = TreeBuilder()
    for page_start in range(start, stop, PAGE):
        builder.extend_hashes(_page(leaf_hashes, page_start, min(page_start + PAGE, stop)))
    return builder.root()


def inclusion_proof(leaf_hashes: LeafHashes, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) of RFC 6962 §2.1.1: the sibling hashes from the leaf up.

    The siblings partition the other leaves, so this reads each of the first `size` leaf
    hashes once: O(size) hashing, O(log size) memory.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    proof: list[bytes] = []
    start, stop = 0, size
    while stop - start > 1:
        split = start + _largest_power_of_two_below(stop - start)
        if index < split:
            proof.append(range_root(leaf_hashes, split, stop))
            stop = split
        else:
            proof.append(range_root(leaf_hashes, start, split))
            start = split
    proof.reverse()
    return proof


def consistency_proof(leaf_hashes: LeafHashes, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 6962 §2.1.2: the tree of `old_size` leaves is a
    prefix of the tree of `new_size` leaves. Empty when the sizes are equal or old_size is 0."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size} leaves")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, stop, remaining, whole = 0, new_size, old_size, True
    while remaining != stop - start:
        split = start + _largest_power_of_two_below(stop - start)
        if remaining <= split - start:
            proof.append(range_root(leaf_hashes, split, stop))
            stop = split
        else:
            proof.append(range_root(leaf_hashes, start, split))
            remaining -= split - start
            start = split
            whole = False
    if not whole:
        proof.append(range_root(leaf_hashes, start, stop))
    proof.reverse()
    return proof


def root_from_inclusion_proof(
    index: int, size: int, hashed_leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or None if it is malformed."""
    if not 0 <= index < size or len(hashed_leaf) != HASH_SIZE:
        return None
    if any(len(sibling) != HASH_SIZE for sibling in proof):
        return None
    position, last = index, size - 1
    root = hashed_leaf
    for sibling in proof:
        if last == 0:
            return None
        if position & 1 or position == last:
            root = node_hash(sibling, root)
            while not position & 1 and position != 0:
                position >>= 1
                last >>= 1
        else:
            root = node_hash(root, sibling)
        position >>= 1
        last >>= 1
    return root if last == 0 else None


def verify_inclusion(
    index: int, size: int, hashed_leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows the leaf hash at `index` in the tree of `size` leaves with `root`."""
    return root_from_inclusion_proof(index, size, hashed_leaf, proof) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root)
    (RFC 9162 §2.1.4.2)."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof or any(len(node) != HASH_SIZE for node in proof):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old tree is a node of the new one
        path.insert(0, old_root)
    position, last = old_size - 1, new_size - 1
    while position & 1:
        position >>= 1
        last >>= 1
    old_hash = new_hash = path[0]
    for node in path[1:]:
        if last == 0:
            return False
        if position & 1 or position == last:
            old_hash = node_hash(node, old_hash)
            new_hash = node_hash(node, new_hash)
            while not position & 1 and position != 0:
                position >>= 1
                last >>= 1
        else:
            new_hash = node_hash(new_hash, node)
        position >>= 1
        last >>= 1
    return last == 0 and old_hash == old_root and new_hash == new_root


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n > 1): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _page(leaf_hashes: LeafHashes, start: int, stop: int) -> Sequence[bytes]:
    """One page of leaf hashes, refusing a source that answers with the wrong count."""
    page = leaf_hashes(start, stop)
    if len(page) != stop - start:
        raise ValueError(
            f"the leaf hash source returned {len(page)} hashes for leaves {start}..{stop - 1}"
        )
    return page
