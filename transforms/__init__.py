"""fimflow's stages and the Beam-free core they wrap.

``schema``: what flows between stages. Stages, one per module, each a typed
``beam.PTransform`` that imports ``schema``, ``stats``, ``core`` and the file
helpers (``files``, ``output_lock``): ``match`` -> ``read`` -> ``tokenize``
-> ``shuffle`` -> ``shards`` (pack, FIM and write per bucket), with
``write`` for dead letters and ``metadata.json``, composed in
``pipeline.build.FimflowPipeline``. ``stats``: the one way stages
run a step and count (metadata.json and Beam counters). ``core``: the
tokenizer library and the algorithms, without Beam. ``beam_workarounds``:
the only module that touches Beam internals.
"""
