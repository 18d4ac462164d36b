"""bnncc side by side with Larq Compute Engine 0.16 and TFLite XNNPACK (``bnncc bench --compare``, benchmarks/).

- :mod:`.layers`: the benchmark layers L1–L5 (docs/benchmarks.md), bnncc against the contenders on them;
- :mod:`.networks`: the same for whole networks, and per-kernel breakdowns;
- :mod:`.contenders`: LCE / TFLite runners, the Keras models and converters, the LCE oracle;
- :mod:`.timing`: contenders timed round-robin in one process;
- :mod:`.roofline`: the popcount roofline probe, its ISA path, and TVM's thread pool;
- :mod:`.results`: tables and result files;
- :mod:`.x86`: the x86 comparison's command line.

TensorFlow, Larq and LCE are imported when a function first needs them, TVM likewise: importing a module of this
package imports none of them.
"""
