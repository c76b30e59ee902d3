"""The ai.edgespec GroupQueryAttention node on its own, through the onnxruntime Python package
(libedgespec_ops.so): the contract it shares with com.microsoft GroupQueryAttention (packed and
separate q/k/v, rotary, a past buffer written at n_past.., separate or shared present buffers) and
a clear error for every input it cannot use."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from edgespec._ort import ops_library  # noqa: E402

pytestmark = pytest.mark.export

NQ, NKV, D, CAP = 4, 2, 16, 32  # query heads, kv heads, head dim, capacity
F32 = TensorProto.FLOAT


def _session(
    packed: bool = True,
    rotary: bool = True,
    caches: bool | None = None,
    tree: bool = False,
    **attrs,
) -> ort.InferenceSession:
    """One-node model; `caches` (default: `rotary`) wires the cos/sin inputs, `tree` the
    tree_parents input."""
    caches = rotary if caches is None else caches
    names = ["query", "" if packed else "key", "" if packed else "value", "past_key",
             "past_value", "seqlens_k", "total_sequence_length",
             "cos" if caches else "", "sin" if caches else ""]  # fmt: skip
    if tree:
        names.append("tree_parents")
    node = helper.make_node(
        "GroupQueryAttention",
        names,
        ["out", "present_key", "present_value"],
        domain="ai.edgespec",
        num_heads=NQ,
        kv_num_heads=NKV,
        do_rotary=int(rotary),
        scale=float(1 / np.sqrt(D)),
        **attrs,
    )
    vi = helper.make_tensor_value_info
    inputs = [vi("query", F32, [1, "s", "w"])]  # symbolic widths: the op checks them
    if not packed:
        inputs += [vi("key", F32, [1, "s", NKV * D]), vi("value", F32, [1, "s", NKV * D])]
    inputs += [vi(n, F32, [1, NKV, "c", D]) for n in ("past_key", "past_value")]
    inputs += [
        vi("seqlens_k", TensorProto.INT32, ["b"]),
        vi("total_sequence_length", TensorProto.INT32, []),
    ]
    if caches:
        inputs += [vi(n, F32, ["p", "h"]) for n in ("cos", "sin")]
    if tree:
        inputs.append(vi("tree_parents", TensorProto.INT32, ["t"]))
    outputs = [vi(n, F32, None) for n in ("out", "present_key", "present_value")]
    graph = helper.make_graph([node], "attn", inputs, outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.edgespec", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    so = ort.SessionOptions()
    so.register_custom_ops_library(ops_library())
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _rope(x: np.ndarray, pos: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate-half rotary of x [..., s, D] at positions pos [s]."""
    c, s = cos[pos], sin[pos]  # [s, D/2]
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def _reference(q, k, v, past_k, past_v, n_past, cos, sin):
    """float64 GQA: q [s, NQ, D], k/v [s, NKV, D], past [NKV, CAP, D] -> out [s, NQ*D], caches."""
    s = q.shape[0]
    pos = np.arange(n_past, n_past + s)
    q = _rope(q.transpose(1, 0, 2), pos, cos, sin)  # [NQ, s, D]
    kc, vc = past_k.astype(np.float64), past_v.astype(np.float64)
    kc[:, pos] = _rope(k.transpose(1, 0, 2), pos, cos, sin)
    vc[:, pos] = v.transpose(1, 0, 2)
    out = np.zeros((s, NQ, D))
    for h in range(NQ):
        g = h // (NQ // NKV)
        for i in range(s):
            n = n_past + i + 1
            a = q[h, i] @ kc[g, :n].T / np.sqrt(D)
            e = np.exp(a - a.max())
            out[i, h] = e @ vc[g, :n] / e.sum()
    return out.reshape(s, NQ * D), kc, vc


def _feeds(s: int, n_past: int, seed: int = 0, **over) -> dict:
    rng = np.random.default_rng(seed)
    pos = np.arange(CAP)[:, None] / 10000 ** (np.arange(D // 2) / (D // 2))
    feeds = {
        "query": rng.standard_normal((1, s, (NQ + 2 * NKV) * D)).astype(np.float32),
        "past_key": rng.standard_normal((1, NKV, CAP, D)).astype(np.float32),
        "past_value": rng.standard_normal((1, NKV, CAP, D)).astype(np.float32),
        "seqlens_k": np.array([n_past + s - 1], np.int32),
        "total_sequence_length": np.array(n_past + s, np.int32),
        "cos": np.cos(pos).astype(np.float32),
        "sin": np.sin(pos).astype(np.float32),
    }
    feeds.update(over)
    return feeds


@pytest.mark.parametrize(("s", "n_past"), [(1, 0), (1, 20), (5, 7), (12, 3)])
def test_matches_a_float64_reference(s, n_past):
    f = _feeds(s, n_past)
    out, pk, pv = _session().run(None, f)
    qkv = f["query"][0]  # [s, (NQ + 2 NKV) D]
    q = qkv[:, : NQ * D].reshape(s, NQ, D)
    k = qkv[:, NQ * D : (NQ + NKV) * D].reshape(s, NKV, D)
    v = qkv[:, (NQ + NKV) * D :].reshape(s, NKV, D)
    past = f["past_key"][0], f["past_value"][0]
    ref, kc, vc = _reference(q, k, v, *past, n_past, f["cos"], f["sin"])
    np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pk[0], kc, rtol=1e-6, atol=1e-6)  # rows past n_past+s: copied
    np.testing.assert_array_equal(pv[0], vc.astype(np.float32))


@pytest.mark.parametrize("s", [2, 5, 6, 7, 8, 9, 13])
def test_a_call_equals_its_rows_one_at_a_time(s):
    """A verify call's rows share a unit per head, or per key/value group up to 12 vectors (6
    rows here), a prefill chunk's up to 8 per head: each row's output must be, bit for bit, what
    a one-row call at its position gives (a unit holding the group's heads)."""
    n_past = 3
    f = _feeds(s, n_past)
    sess = _session()
    out = sess.run(None, f)[0]  # [1, s, NQ * D]
    past_k, past_v, rows = f["past_key"], f["past_value"], []
    for i in range(s):
        one = _feeds(
            1, n_past + i, query=f["query"][:, i : i + 1], past_key=past_k, past_value=past_v
        )
        row, past_k, past_v = sess.run(None, one)
        rows.append(row[0])
    np.testing.assert_array_equal(out[0], np.concatenate(rows))


def test_separate_qkv_equal_packed():
    f = _feeds(4, 9)
    qkv = f.pop("query")
    sep = {
        "query": np.ascontiguousarray(qkv[..., : NQ * D]),
        "key": np.ascontiguousarray(qkv[..., NQ * D : (NQ + NKV) * D]),
        "value": np.ascontiguousarray(qkv[..., (NQ + NKV) * D :]),
    }
    packed = _session().run(None, {**f, "query": qkv})
    separate = _session(packed=False).run(None, {**f, **sep})
    for a, b in zip(packed, separate, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shared_buffer_is_written_in_place():
    """IO binding with present bound to the past buffer (the runtime's mode): the new rows land
    at n_past.. and the output equals the run with separate buffers."""
    f = _feeds(3, 5)
    sess = _session()
    want_out, want_k, _ = sess.run(None, f)
    io = sess.io_binding()
    kv = {n: ort.OrtValue.ortvalue_from_numpy(f[n].copy()) for n in ("past_key", "past_value")}
    for n, value in f.items():
        if n not in kv:
            io.bind_cpu_input(n, value)
    io.bind_output("out")  # outputs()[0]
    for n, buf in kv.items():
        io.bind_ortvalue_input(n, buf)
        io.bind_ortvalue_output(n.replace("past", "present"), buf)
    sess.run_with_iobinding(io)
    np.testing.assert_array_equal(io.get_outputs()[0].numpy(), want_out)
    np.testing.assert_array_equal(kv["past_key"].numpy(), want_k)


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"seqlens_k": np.array([6], np.int32)}, r"seqlens_k \+ 1 = 7 and total_sequence_length 6"),
        (
            {"seqlens_k": np.array([1], np.int32), "total_sequence_length": np.array(2, np.int32)},
            r"must agree, cover the 4 new tokens",
        ),  # fmt: skip
        (
            {
                "seqlens_k": np.array([CAP], np.int32),
                "total_sequence_length": np.array(CAP + 1, np.int32),
            },
            r"fit the capacity 32",
        ),  # fmt: skip
        ({"seqlens_k": np.array([5, 5], np.int32)}, r"seqlens_k must hold one value \(batch 1\)"),
        ({"past_value": np.zeros((1, NKV, CAP - 1, D), np.float32)}, r"past_key/past_value must"),
        ({"cos": np.zeros((CAP, D // 2 + 1), np.float32)}, r"cos_cache / sin_cache \[32, 9\]"),
        ({"query": np.zeros((1, 4, NQ * D), np.float32)}, r"packed query width 64 must be"),
    ],
)
def test_bad_inputs_are_clear_errors(over, pattern):
    sess = _session()
    with pytest.raises(Exception, match=pattern) as info:  # onnxruntime's Fail / RuntimeException
        sess.run(None, _feeds(4, 2, **over))
    assert "ai.edgespec.GroupQueryAttention" in str(info.value)
    out, _, _ = sess.run(None, _feeds(4, 2))  # the session still works
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("attrs", "pattern"),
    [
        ({"rotary_interleaved": 1}, "rotary_interleaved=1 is not supported"),
        ({"local_window_size": 8}, "local_window_size is not supported"),
        ({"softcap": 30.0}, "softcap is not supported"),
    ],
)
def test_unsupported_attributes_fail_at_load(attrs, pattern):
    with pytest.raises(Exception, match=pattern):
        _session(**attrs)


def test_rotary_needs_its_caches():
    f = _feeds(2, 3)
    del f["cos"], f["sin"]
    with pytest.raises(Exception, match=r"input cos_cache \(do_rotary=1\) is missing"):
        _session(caches=False).run(None, f)


def test_without_rotary_no_caches_are_needed():
    """do_rotary=0 equals rotary with cos = 1, sin = 0 (the identity rotation)."""
    f = _feeds(3, 4)
    identity = {"cos": np.ones_like(f["cos"]), "sin": np.zeros_like(f["sin"])}
    want = _session().run(None, {**f, **identity})
    del f["cos"], f["sin"]
    got = _session(rotary=False).run(None, f)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def _ancestors(parents: list[int], i: int) -> list[int]:
    """Rows from the root down to row i (itself included)."""
    path = [i]
    while parents[path[-1]] >= 0:
        path.append(parents[path[-1]])
    return path[::-1]


PARENTS = [
    [-1, 0, 1, 0, 3, 1, 5, 0],  # three branches off the root, one of depth 3
    [-1, 0, 0, 0, 1, 2, 3, 4],  # a wide first level
    [-1, 0, 1, 2, 3, 4, 5, 2],  # a chain with one late sibling
]


@pytest.mark.parametrize("parents", PARENTS)
@pytest.mark.parametrize("n_past", [0, 5, 17])
def test_tree_rows_equal_their_path_verified_as_a_chain(parents, n_past):
    """Row i of a tree call gives the bits that the chain root..i gives at its last row, and its
    key/value land at slot n_past + i rotated at position n_past + depth(i)."""
    s = len(parents)
    f = _feeds(s, n_past, seed=3)
    sess = _session(tree=True)
    out, pk, pv = sess.run(None, {**f, "tree_parents": np.array(parents, np.int32)})
    for i in range(s):
        path = _ancestors(parents, i)
        n = len(path)
        chain = {
            **f,
            "query": np.ascontiguousarray(f["query"][:, path]),
            "seqlens_k": np.array([n_past + n - 1], np.int32),
            "total_sequence_length": np.array(n_past + n, np.int32),
            "tree_parents": np.arange(-1, n - 1, dtype=np.int32),
        }
        c_out, c_k, c_v = sess.run(None, chain)
        assert np.array_equal(out[0, i], c_out[0, -1]), i
        assert np.array_equal(pk[0, :, n_past + i], c_k[0, :, n_past + n - 1]), i
        assert np.array_equal(pv[0, :, n_past + i], c_v[0, :, n_past + n - 1]), i


def test_a_chain_of_parents_equals_no_tree():
    f = _feeds(6, 4)
    want = _session().run(None, f)
    got = _session(tree=True).run(None, {**f, "tree_parents": np.arange(-1, 5, dtype=np.int32)})
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("parents", "pattern"),
    [
        ([-1, 0, 2, 1], r"tree_parents\[2\] = 2 is not in \[-1, 2\)"),
        ([-1, 0, -2, 1], r"tree_parents\[2\] = -2 is not in"),
        ([-1, 0, 0], r"tree_parents must be \[S\] = \[4\], got \[3\]"),
    ],
)
def test_bad_trees_are_clear_errors(parents, pattern):
    sess = _session(tree=True)
    f = _feeds(4, 2)
    with pytest.raises(Exception, match=pattern):
        sess.run(None, {**f, "tree_parents": np.array(parents, np.int32)})
    out, _, _ = sess.run(None, {**f, "tree_parents": np.array([-1, 0, 0, 1], np.int32)})
    assert np.isfinite(out).all()
