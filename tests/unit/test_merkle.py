"""The Merkle tree is RFC 6962's: checked against the RFC's recursive definitions, the published
Certificate Transparency test vectors, and properties over trees of random sizes."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import (
    EMPTY_ROOT,
    LeafHashes,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)


def h(hex_digits: str) -> bytes:
    return bytes.fromhex(hex_digits)


# The RFC 6962 definitions, written recursively exactly as §2.1 states them.


def mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def rfc_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, leaves[:k]), mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), mth(leaves[:k])]


def rfc_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*rfc_subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*rfc_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def source(leaves: Sequence[bytes]) -> LeafHashes:
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return lambda start, stop: hashes[start:stop]


def make_leaves(n: int, salt: int = 0) -> list[bytes]:
    return [f"event {i} of {salt}".encode() for i in range(n)]


# Published vectors. The hashing vectors are those of transparency-dev/merkle
# rfc6962/rfc6962_test.go; the tree, inclusion and consistency vectors are the Certificate
# Transparency reference vectors (google/certificate-transparency merkle_tree_test.cc), as
# carried in transparency-dev/merkle proof/verify_test.go (Apache-2.0).

CT_LEAVES = [h(""), h("00"), h("10"), h("2021"), h("3031"), h("40414243"),
             h("5051525354555657"), h("606162636465666768696a6b6c6d6e6f")]  # fmt: skip
CT_ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
CT_INCLUSION = [  # (leaf index, tree size, audit path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


def test_hashes_match_the_rfc6962_vectors() -> None:
    assert h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == EMPTY_ROOT
    assert leaf_hash(b"") == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == h(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == h(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_tree_heads_match_the_ct_vectors(size: int) -> None:
    builder = TreeBuilder()
    for leaf in CT_LEAVES[:size]:
        builder.append(leaf)
    assert builder.root() == CT_ROOTS[size - 1]
    assert range_root(source(CT_LEAVES), 0, size) == CT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_the_ct_vectors(index: int, size: int, path: list[str]) -> None:
    expected = [h(node) for node in path]
    assert inclusion_proof(source(CT_LEAVES), index, size) == expected
    assert verify_inclusion(index, size, leaf_hash(CT_LEAVES[index]), expected, CT_ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_ct_vectors(old: int, new: int, path: list[str]) -> None:
    expected = [h(node) for node in path]
    assert consistency_proof(source(CT_LEAVES), old, new) == expected
    assert verify_consistency(old, new, CT_ROOTS[old - 1], CT_ROOTS[new - 1], expected)


@pytest.mark.parametrize(("old", "new", "path"), [c for c in CT_CONSISTENCY if c[2]])
def test_corrupted_ct_consistency_proofs_fail(old: int, new: int, path: list[str]) -> None:
    proof = [h(node) for node in path]
    old_root, new_root = CT_ROOTS[old - 1], CT_ROOTS[new - 1]
    probes = [
        (old - 1, new, old_root, new_root, proof),
        (old + 1, new, old_root, new_root, proof),
        (old ^ 2, new, old_root, new_root, proof),
        (old, new * 2, old_root, new_root, proof),
        (old, new // 2, old_root, new_root, proof),
        (old, new, b"WrongRoot", new_root, proof),
        (old, new, old_root, b"WrongRoot", proof),
        (old, new, new_root, old_root, proof),
        (old, new, old_root, new_root, []),
        (old, new, old_root, new_root, [*proof, b""]),
        (old, new, old_root, new_root, [*proof, old_root]),
        (old, new, old_root, new_root, [*proof, new_root]),
        (old, new, old_root, new_root, [b"", *proof]),
        (old, new, old_root, new_root, [old_root, *proof]),
        (old, new, old_root, new_root, [new_root, *proof]),
        (old, new, old_root, new_root, [proof[0], *proof]),
        (old, new, old_root, new_root, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        probes.append((old, new, old_root, new_root, [*proof[:i], flipped, *proof[i + 1 :]]))
    for probe in probes:
        assert not verify_consistency(*probe), probe


def test_trivial_consistency() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, CT_ROOTS[4], [])
    assert verify_consistency(3, 3, CT_ROOTS[2], CT_ROOTS[2], [])
    assert not verify_consistency(3, 3, CT_ROOTS[2], CT_ROOTS[3], [])
    assert not verify_consistency(3, 3, CT_ROOTS[2], CT_ROOTS[2], [EMPTY_ROOT])
    assert not verify_consistency(0, 1, EMPTY_ROOT, CT_ROOTS[0], [EMPTY_ROOT])
    assert not verify_consistency(2, 1, CT_ROOTS[1], CT_ROOTS[0], [])


def test_inclusion_refuses_impossible_positions() -> None:
    some = leaf_hash(b"x")
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 3)]:
        assert root_from_inclusion_proof(index, size, some, []) is None
    assert verify_inclusion(0, 1, some, [], some)
    assert not verify_inclusion(0, 1, b"", [], b"")
    assert not verify_inclusion(0, 1, some, [], EMPTY_ROOT)


# Properties over random trees.

sizes = st.integers(min_value=1, max_value=70)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=0, max_value=130))
def test_incremental_root_equals_the_recursive_definition_at_every_size(n: int) -> None:
    leaves = make_leaves(n)
    builder = TreeBuilder()
    assert builder.root() == mth([])
    for i, leaf in enumerate(leaves):
        builder.append(leaf)
        assert builder.size == i + 1
        assert len(builder.frontier) == (i + 1).bit_count()
        assert builder.root() == mth(leaves[: i + 1])


@settings(max_examples=40, deadline=None)
@given(n=sizes, data=st.data())
def test_a_resumed_builder_continues_the_same_tree(n: int, data: st.DataObject) -> None:
    leaves = make_leaves(n)
    cut = data.draw(st.integers(min_value=0, max_value=n))
    first = TreeBuilder()
    for leaf in leaves[:cut]:
        first.append(leaf)
    resumed = TreeBuilder(first.size, first.frontier)
    rebuilt = TreeBuilder.from_leaf_hashes(source(leaves), cut)
    for leaf in leaves[cut:]:
        resumed.append(leaf)
        rebuilt.append(leaf)
    assert resumed.root() == rebuilt.root() == mth(leaves)


@settings(max_examples=40, deadline=None)
@given(n=sizes)
def test_every_inclusion_proof_is_the_rfc_path_and_verifies(n: int) -> None:
    leaves = make_leaves(n)
    root = mth(leaves)
    hashes = source(leaves)
    for index in range(n):
        proof = inclusion_proof(hashes, index, n)
        assert proof == rfc_path(index, leaves)
        assert verify_inclusion(index, n, leaf_hash(leaves[index]), proof, root)


@settings(max_examples=60, deadline=None)
@given(n=sizes, data=st.data())
def test_an_inclusion_proof_fails_for_any_other_leaf_position_size_or_root(
    n: int, data: st.DataObject
) -> None:
    leaves = make_leaves(n)
    root = mth(leaves)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion_proof(source(leaves), index, n)
    hashed = leaf_hash(leaves[index])
    other_leaf = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index)
                           if n > 1 else st.just(None))  # fmt: skip
    if other_leaf is not None:
        assert not verify_inclusion(index, n, leaf_hash(leaves[other_leaf]), proof, root)
        assert not verify_inclusion(other_leaf, n, hashed, proof, root)
    assert not verify_inclusion(index, n, leaf_hash(b"forged"), proof, root)
    other_size = data.draw(st.integers(min_value=1, max_value=2 * n + 2).filter(lambda s: s != n))
    assume(index < other_size)
    # The size is bound only through the root: the real root of a log of that other size.
    assert not verify_inclusion(index, other_size, hashed, proof, mth(make_leaves(other_size)))
    assert not verify_inclusion(index, n, hashed, proof, mth(make_leaves(n, salt=1)))
    for i in range(len(proof)):
        flipped = [*proof[:i], bytes([proof[i][0] ^ 1]) + proof[i][1:], *proof[i + 1 :]]
        assert not verify_inclusion(index, n, hashed, flipped, root)


@settings(max_examples=60, deadline=None)
@given(n=sizes, data=st.data())
def test_consistency_proofs_verify_between_any_sizes(n: int, data: st.DataObject) -> None:
    leaves = make_leaves(n)
    m = data.draw(st.integers(min_value=0, max_value=n))
    proof = consistency_proof(source(leaves), m, n)
    if m > 0:
        assert proof == rfc_subproof(m, leaves, True)
    assert verify_consistency(m, n, mth(leaves[:m]), mth(leaves), proof)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=2, max_value=70), data=st.data())
def test_consistency_fails_when_any_leaf_of_the_old_tree_changed(
    n: int, data: st.DataObject
) -> None:
    leaves = make_leaves(n)
    m = data.draw(st.integers(min_value=1, max_value=n - 1))
    changed = data.draw(st.integers(min_value=0, max_value=m - 1))
    rewritten = list(leaves)
    rewritten[changed] = b"rewritten"
    # The log now holds the rewritten history; the old head was of the original one.
    proof = consistency_proof(source(rewritten), m, n)
    assert not verify_consistency(m, n, mth(leaves[:m]), mth(rewritten), proof)


def test_a_builder_streams_leaves_in_flat_memory() -> None:
    builder = TreeBuilder()
    tracemalloc.start()
    try:
        for i in range(100_000):
            builder.append_hash(i.to_bytes(32, "big"))
            if i == 1000:
                baseline = tracemalloc.get_traced_memory()[0]
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert builder.size == 100_000
    assert len(builder.frontier) == (100_000).bit_count()
    assert grown < 10_000


def test_proofs_and_resumed_builders_read_across_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merkle, "PAGE", 3)
    leaves = make_leaves(23)
    hashes = source(leaves)
    assert TreeBuilder.from_leaf_hashes(hashes, 23).root() == mth(leaves)
    assert range_root(hashes, 5, 19) == mth(leaves[5:19])
    for index in range(23):
        assert inclusion_proof(hashes, index, 23) == rfc_path(index, leaves)
    for old in range(1, 23):
        assert consistency_proof(hashes, old, 23) == rfc_subproof(old, leaves, True)


def test_a_source_that_answers_short_is_refused() -> None:
    hashes = [leaf_hash(leaf) for leaf in make_leaves(8)]
    with pytest.raises(ValueError, match=r"returned 7 hashes for leaves 0\.\.7"):
        range_root(lambda start, stop: hashes[start : stop - 1], 0, 8)
