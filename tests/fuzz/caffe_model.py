"""Fuzz the Caffe loaders (:mod:`bnncc.frontend.caffe_files`, :mod:`bnncc.frontend.caffe`): the text-format
``.prototxt`` parse (with the per-layer attribution of unknown fields), the layer checks (convolution and pooling
parameters), the input shapes, the ``.caffemodel`` parse and every blob's shape and values:
``python -m tests.fuzz.caffe_model -runs=100000``.

An input is a prototxt, optionally followed by :data:`SPLIT` and caffemodel bytes. The Relax conversion after the
checks is not fuzzed here (TVM graph building: too slow per input); its bad-net paths are tested in
tests/frontend/test_caffe.py."""

from __future__ import annotations

from tests.fuzz.harness import as_file, fuzz_main, instrumented

with instrumented("google.protobuf.text_format"):
    from bnncc.frontend import caffe, caffe_files, caffe_pooling

SPLIT = b"\n#caffemodel\n"


def one_input(data: bytes) -> None:
    text, _, weights = data.partition(SPLIT)
    proto = as_file(text, ".prototxt")
    net = caffe_files.load_prototxt(proto, caffe.CAFFE)
    caffe.problems_of(proto)
    caffe.input_shapes(net, proto)
    for layer in net.layer:
        if layer.type == "Pooling":
            try:
                caffe_pooling.pool_geometry(layer.pooling_param, 9, 7)
            except caffe.Unsupported:
                pass
    if weights:
        model = caffe_files.load_caffemodel(as_file(weights, ".caffemodel"))
        for layer in model.layer:
            for i, blob in enumerate(layer.blobs):
                shape, _ = caffe_files.blob_shape(blob)
                if len(shape) <= 8 and all(0 <= d < 1 << 20 for d in shape):
                    try:
                        caffe_files.blob_array(blob, i, shape, "w.caffemodel")
                    except caffe.Unsupported:
                        pass


def seeds() -> dict[str, bytes]:
    from bnncc.frontend.caffe_schema import NetParameter

    net = (b'name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
           b'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 '
           b'kernel_size: 3 pad: 1 stride: 2 group: 1 weight_filler { type: "msra" } } }\n'
           b'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { eps: 1e-5 } }\n'
           b'layer { name: "s" type: "BinaryActive" bottom: "c" top: "s" }\n'
           b'layer { name: "p" type: "Pooling" bottom: "s" top: "p" pooling_param { pool: AVE kernel_h: 3 '
           b'kernel_w: 2 stride: 2 pad_h: 1 round_mode: FLOOR } }\n'
           b'layer { name: "e" type: "Eltwise" bottom: "p" bottom: "p" top: "e" eltwise_param { operation: SUM '
           b'coeff: 1 coeff: -1 } }\n'
           b'layer { name: "lrn" type: "LRN" bottom: "e" top: "l" lrn_param { local_size: 5 } }  # unsupported\n')
    weights = NetParameter()
    layer = weights.layer.add(name="c", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend([4, 3, 3, 3])
    blob.data.extend([0.5] * 108)
    legacy = layer.blobs.add(num=1, channels=1, height=1, width=4)
    legacy.data.extend([0.1, 0.2, 0.3, 0.4])
    bn = weights.layer.add(name="bn", type="BatchNorm")
    for values in ([0.0] * 4, [1.0] * 4, [1.0]):
        b = bn.blobs.add()
        b.shape.dim.append(len(values))
        b.double_data.extend(values)
    return {
        "net": net,
        "net-and-weights": net + SPLIT + weights.SerializeToString(),
        "input-layer": b'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }\n'
                       b'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                       b'inner_product_param { num_output: 2 axis: -1 } }\n',
        "v1": b'layers { name: "a" type: RELU }\n',
    }


if __name__ == "__main__":
    fuzz_main("caffe_model", one_input, seeds)
