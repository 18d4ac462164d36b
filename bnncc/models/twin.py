"""The float twin of a Larq model: the same graph and weights with every quantizer removed.

Used to time a BNN against the float network it replaces (``bnncc demo``, the benchmarks).
"""

from __future__ import annotations

from typing import Any

from .._tf import lq, tf

__all__ = ["strip_quantizers", "tflite_float_runner"]


def _quant_to_float_class(layer: tf.keras.layers.Layer) -> type | None:
    """The float Keras class of a larq ``Quant*`` layer (QuantConv2D → Conv2D, …), or None."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("larq.layers") and cls.__name__.startswith("Quant"):
            float_cls = getattr(tf.keras.layers, cls.__name__[len("Quant") :], None)
            if float_cls is None:
                raise NotImplementedError(f"no float Keras equivalent of larq layer {cls.__name__}")
            return float_cls
    return None


def _is_larq_object(cfg: Any) -> bool:
    return isinstance(cfg, dict) and str(cfg.get("module", "")).startswith("larq")


def _strip_layer(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
    if isinstance(layer, tf.keras.Model):
        return strip_quantizers(layer)
    if isinstance(layer, lq.quantizers._BaseQuantizer):
        # A quantizer used as a standalone layer: the float twin just lets the value through.
        return tf.keras.layers.Activation("linear", name=layer.name)
    float_cls = _quant_to_float_class(layer)
    if float_cls is None:
        return type(layer).from_config(layer.get_config())
    cfg = dict(layer.get_config())
    for key in list(cfg):
        if key.endswith("_quantizer") or key in ("pad_values", "metrics"):
            del cfg[key]
        elif key.endswith("_constraint") and (_is_larq_object(cfg[key]) or isinstance(cfg[key], str)):
            del cfg[key]  # weight_clip & co. are training-only and larq-specific
    if _is_larq_object(cfg.get("activation")):
        cfg["activation"] = "linear"
    return float_cls.from_config(cfg)


def strip_quantizers(model: tf.keras.Model) -> tf.keras.Model:
    """Clone ``model`` with every larq ``Quant*`` layer replaced by its float Keras layer, keeping the
    (latent) weights.

    Input/kernel quantizers, ``pad_values`` and larq constraints are dropped, so a ``QuantConv2D(...,
    pad_values=1.0)`` becomes a ``Conv2D`` padding with zeros: the float twin is a *timing* contender with the
    same graph and weights, not a numerical equivalent of the binary network.  Standalone larq
    quantizer layers become identities.  Nested models are stripped recursively.
    """
    clone = tf.keras.models.clone_model(model, clone_function=_strip_layer)
    new_by_name = {layer.name: layer for layer in clone.layers}
    for old in model.layers:
        if isinstance(old, tf.keras.layers.InputLayer):
            continue
        new = new_by_name[old.name]
        old_w, new_w = old.get_weights(), new.get_weights()
        if [w.shape for w in old_w] != [w.shape for w in new_w]:
            raise ValueError(
                f"layer {old.name}: weight shapes {[w.shape for w in old_w]} vs {[w.shape for w in new_w]}"
            )
        new.set_weights(old_w)
    return clone




def tflite_float_runner(model, num_threads: int):
    """Time a float Keras model in TFLite with XNNPACK (its default delegate): ``f(x, repeats) -> seconds``."""
    import time

    flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interp = tf.lite.Interpreter(model_content=flat, num_threads=num_threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]

    def run(x, repeats: int) -> list[float]:
        interp.set_tensor(inp, x)
        for _ in range(3):
            interp.invoke()
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            interp.invoke()
            samples.append(time.perf_counter() - t0)
        return samples

    return run
