"""The compiled ``kokoro_lab.SnakeQuantize`` against the graph it replaces, on a hand-built
resblock (AdaIN, Snake, quantized dilated convolution): the same quantization range, the same
uint8 levels but for a rounding tie, the same convolution; and how the library is built and
refused (headers, compiler, the ``.deb`` it reads them from)."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from kokoro_lab.engine.graphs import native, variants
from kokoro_lab.engine.graphs.common import RewriteError
from kokoro_lab.engine.graphs.fused import fuse_snake_quantize

from .test_variants import C, adain_snake_graph, conv_graph

T = 997  # not a multiple of any tile or vector width: every tail of the kernel runs


def resblock_graph(dilation: int) -> onnx.ModelProto:
    """AdaIN -> Snake -> DynamicQuantizeLinear -> ConvInteger, as a released resblock, with the
    quantizer's outputs exposed so the kernel's can be compared with them."""
    snake, conv = adain_snake_graph(), conv_graph(bias=True, dilation=dilation)
    constants = {t.name for t in conv.graph.initializer}

    def name(tensor: str) -> str:  # the conv reads the Snake; its own tensors get a prefix
        return "out" if tensor == "x" else tensor if tensor in constants else "conv/" + tensor

    graph = snake.graph
    for node in conv.graph.node:
        node.input[:] = [name(t) for t in node.input]
        node.output[:] = [name(t) for t in node.output]
    graph.node.extend(conv.graph.node)
    graph.initializer.extend(conv.graph.initializer)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("conv/y", TensorProto.FLOAT, None),
                         helper.make_tensor_value_info("conv/xs", TensorProto.FLOAT, []),
                         helper.make_tensor_value_info("conv/xz", TensorProto.UINT8, [])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def poly_graph(dilation: int) -> onnx.ModelProto:
    """The resblock as ``matmul-fused-poly`` rewrites it (the graph the kernel replaces)."""
    return variants.adain_to_instance_norm(variants.conv_integer_to_matmul(
        resblock_graph(dilation)), sine_degree=variants.SNAKE_SINE_DEGREE)


def run(model: onnx.ModelProto, feeds: dict, library: str = "") -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if library:
        options.register_custom_ops_library(library)
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def feeds(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0.5, 2, (1, C, T)).astype(np.float32),
            "gamma1": rng.uniform(0.5, 3.0, (1, C, 1)).astype(np.float32),
            "beta": rng.normal(0, 2.0, (1, C, 1)).astype(np.float32)}


@pytest.fixture(scope="module")
def library() -> str:
    return str(native.library_path())


@pytest.mark.compiles
@pytest.mark.parametrize("dilation", [1, 3])
def test_the_kernel_computes_what_the_graph_it_replaces_computes(library, dilation):
    poly = poly_graph(dilation)
    fused = fuse_snake_quantize(poly)
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count(native.OP) == 1
    for gone in ("InstanceNormalization", "DynamicQuantizeLinear", "Transpose", "Pad"):
        assert gone not in ops[:ops.index(native.OP)]
    for seed in range(3):
        y, scale, zero = run(poly, feeds(seed))
        y2, scale2, zero2 = run(fused, feeds(seed), library)
        # The norm's statistics are summed in another order: the range moves by rounding only,
        # and a level may move by one where a value sat on a rounding tie.
        np.testing.assert_allclose(scale2, scale, rtol=1e-5)
        assert abs(int(zero2) - int(zero)) <= 1
        step = float(scale) * 0.01  # activation step x weight scale: one level of the product
        assert np.abs(y2 - y).max() <= 3 * C * 68 * step
        assert np.mean(np.abs(y2 - y) <= 1e-3 * np.abs(y).max()) > 0.98


@pytest.mark.compiles
def test_the_kernel_pads_with_the_zero_point_and_writes_time_major(library):
    """The uint8 tensor itself, read from the graph (the conv's im2col input)."""
    poly = poly_graph(3)
    fused = fuse_snake_quantize(poly)
    node = next(n for n in fused.graph.node if n.op_type == native.OP)
    for model in (poly, fused):
        model.graph.output.append(helper.make_tensor_value_info(node.output[0],
                                                                TensorProto.UINT8, None))
    *_, levels = run(poly, feeds(7))
    *_, zero, levels2 = run(fused, feeds(7), library)
    assert levels2.shape == levels.shape == (1, T + 6, C)  # time-major, padded 3 + 3
    assert (levels2[0, :3] == zero).all() and (levels2[0, -3:] == zero).all()
    assert np.abs(levels2.astype(int) - levels).max() <= 1
    assert np.mean(levels2 == levels) > 0.99


def time_major_poly_graph(dilation: int) -> onnx.ModelProto:
    """The resblock reading a time-major x through a Transpose, as a chain after a GEMM does."""
    model = poly_graph(dilation)
    graph = model.graph
    graph.input[0].CopyFrom(helper.make_tensor_value_info("x_time_major", TensorProto.FLOAT,
                                                          [1, None, C]))
    graph.node.insert(0, helper.make_node("Transpose", ["x_time_major"], ["x"], perm=[0, 2, 1]))
    return model


@pytest.mark.compiles
def test_a_chain_after_a_transpose_to_channel_major_reads_the_time_major_tensor(library):
    poly = time_major_poly_graph(3)
    fused = fuse_snake_quantize(poly)
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count(native.OP_TIME_MAJOR) == 1 and native.OP not in ops
    assert "Transpose" not in ops[:ops.index(native.OP_TIME_MAJOR)]
    for seed in range(2):
        x = feeds(seed)
        x["x_time_major"] = x.pop("x").transpose(0, 2, 1).copy()
        y, scale, zero = run(poly, x)
        y2, scale2, zero2 = run(fused, x, library)
        np.testing.assert_allclose(scale2, scale, rtol=1e-5)
        assert abs(int(zero2) - int(zero)) <= 1
        assert np.mean(np.abs(y2 - y) <= 1e-3 * np.abs(y).max()) > 0.98


def kernel_node_graph(op: str, channels: int) -> onnx.ModelProto:
    node = helper.make_node(op, ["x", "scale", "bias", "out", "params", "pads"],
                            ["q", "qs", "qz"], domain=native.DOMAIN)
    rng = np.random.default_rng(3)
    inits = [onnx.numpy_helper.from_array(value, name) for name, value in (
        ("scale", rng.uniform(0.2, 2, channels).astype(np.float32)),
        ("bias", rng.normal(0, 1, channels).astype(np.float32)),
        ("out", rng.uniform(0.5, 3, channels).astype(np.float32)),
        ("params", np.array([1e-5, 0.8, -0.3], np.float32)),
        ("pads", np.array([2, 5], np.int64)))]
    graph = helper.make_graph(
        [node], "kernel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(n, t, None) for n, t in
         (("q", TensorProto.UINT8), ("qs", TensorProto.FLOAT), ("qz", TensorProto.UINT8))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(native.DOMAIN, 1)])


@pytest.mark.compiles
@pytest.mark.parametrize("channels", [13, 256])  # 13: every channel tail of the vectors runs
def test_the_time_major_kernel_gives_the_channel_major_kernels_levels(library, channels):
    x = np.random.default_rng(4).normal(0.3, 2, (1, channels, T)).astype(np.float32)
    q, scale, zero = run(kernel_node_graph(native.OP, channels), {"x": x}, library)
    q2, scale2, zero2 = run(kernel_node_graph(native.OP_TIME_MAJOR, channels),
                            {"x": x.transpose(0, 2, 1).copy()}, library)
    assert q2.shape == q.shape == (1, 2 + T + 5, channels)
    np.testing.assert_allclose(scale2, scale, rtol=1e-5)
    assert abs(int(zero2) - int(zero)) <= 1  # the statistics are summed in another order
    assert (q2[0, :2] == zero2).all() and (q2[0, -5:] == zero2).all()
    assert np.abs(q2.astype(int) - q).max() <= 1 and np.mean(q2 == q) > 0.999


def test_a_graph_without_the_chain_is_refused():
    with pytest.raises(RewriteError, match="no InstanceNormalization"):
        fuse_snake_quantize(resblock_graph(1))  # not rewritten to the polynomial form first


def test_the_fused_variant_needs_the_library_and_is_judged_by_ear():
    assert "matmul-fused-kernel" in variants.NATIVE and "matmul-fused-kernel" in variants.VARIANTS
    assert "matmul-fused-kernel" not in variants.EXACT


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(native.HEADERS_ENV, str(tmp_path))
    for name in native.HEADERS:
        (tmp_path / name).write_text("")
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(native.NativeUnavailable, match="no C\\+\\+ compiler"):
        native.library_path()


def test_own_headers_must_all_be_there(monkeypatch, tmp_path):
    monkeypatch.setenv(native.HEADERS_ENV, str(tmp_path))
    (tmp_path / "onnxruntime_c_api.h").write_text("")
    with pytest.raises(native.NativeUnavailable, match="lacks onnxruntime_cxx_api.h"):
        native.library_path()


def test_a_compile_error_is_reported_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("KOKORO_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(native.HEADERS_ENV, str(tmp_path))
    for name in native.HEADERS:  # empty headers: the source cannot compile against them
        (tmp_path / name).write_text("")
    with pytest.raises(native.NativeUnavailable, match="compiling the fused vocoder kernel"):
        native.library_path()
    assert not list((tmp_path / "cache").rglob("*.so"))


def test_a_new_build_leaves_only_the_newest_few_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KOKORO_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(native.HEADERS_ENV, str(tmp_path))
    for name in native.HEADERS:
        (tmp_path / name).write_text("")
    compiler = tmp_path / "fake-cxx"  # writes its -o argument, like a successful build
    compiler.write_text('#!/bin/sh\nfor a; do [ "$o" = -o ] && echo built > "$a"; o=$a; done\n')
    compiler.chmod(0o755)
    monkeypatch.setenv("CXX", str(compiler))
    folder = tmp_path / "cache" / "native"
    folder.mkdir(parents=True)
    old = [folder / f"snake_quantize-old{i}.so" for i in range(6)]
    for age, path in enumerate(old):  # old0 the newest
        path.write_text("")
        os.utime(path, (1e9 - age, 1e9 - age))
    (folder / "notes.txt").write_text("not a build")
    target = native.library_path()
    assert target.read_text() == "built\n"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [target.name, "notes.txt"] + [p.name for p in old[:native.KEPT_BUILDS - 1]])


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" * (len(data) % 2)
    return out


def test_the_headers_are_read_out_of_a_debian_package():
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:xz") as archive:
        info = tarfile.TarInfo("./usr/include/onnxruntime/onnxruntime_c_api.h")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    package = _ar({"debian-binary": b"2.0\n", "control.tar.xz": b"abc",
                   "data.tar.xz": tar.getvalue()})
    data = native._deb_member(package, "data.tar.xz")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.extractfile("./usr/include/onnxruntime/onnxruntime_c_api.h")
        assert member.read() == b"hello"
    with pytest.raises(native.NativeUnavailable, match="no data.tar.zst"):
        native._deb_member(package, "data.tar.zst")
    with pytest.raises(native.NativeUnavailable, match="not a Debian archive"):
        native._deb_member(b"PK\x03\x04", "data.tar.xz")


def test_an_unreachable_archive_says_how_to_bring_ones_own_headers(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(native.urllib.request, "urlopen", refuse)
    with pytest.raises(native.NativeUnavailable, match=native.HEADERS_ENV):
        native._download(native.HEADERS_DEB)


def test_doctor_says_whether_the_kernel_is_built_without_building_it(monkeypatch, tmp_path):
    from kokoro_lab.diagnostics.environment import kernel_check

    monkeypatch.setenv("KOKORO_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(native.HEADERS_ENV, str(tmp_path))
    for name in native.HEADERS:
        (tmp_path / name).write_text("")
    check = kernel_check()
    assert check.status == "info" and "not built yet" in check.detail
    assert "matmul-fused-kernel" in check.detail and not (tmp_path / "cache" / "native").exists()
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    check = kernel_check()
    assert check.status == "warn" and "no C++ compiler" in check.detail and "g++" in check.fix


@pytest.mark.compiles
def test_bad_input_is_an_error_from_the_op_not_a_crash(library):
    node = helper.make_node(native.OP, ["x", "s", "s", "s", "p", "pads"], ["q", "qs", "qz"],
                            domain=native.DOMAIN)
    graph = helper.make_graph(
        [node], "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, None])],
        [helper.make_tensor_value_info(n, t, None) for n, t in
         (("q", TensorProto.UINT8), ("qs", TensorProto.FLOAT), ("qz", TensorProto.UINT8))],
        [onnx.numpy_helper.from_array(np.ones(4, np.float32), "s"),
         onnx.numpy_helper.from_array(np.ones(2, np.float32), "p"),  # three params expected
         onnx.numpy_helper.from_array(np.zeros(2, np.int64), "pads")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(native.DOMAIN, 1)])
    with pytest.raises(Exception, match="SnakeQuantize: expects x \\[1, C, T\\]"):
        run(model, {"x": np.ones((1, 4, 10), np.float32)}, library)
    model.graph.node[0].op_type = native.OP_TIME_MAJOR  # x [1, 4, 10]: ten channels there
    with pytest.raises(Exception, match="SnakeQuantizeTimeMajor: expects x \\[1, T, C\\]"):
        run(model, {"x": np.ones((1, 4, 10), np.float32)}, library)
