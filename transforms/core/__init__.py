"""The Beam-free core: the tokenizer library and the algorithms the stages wrap.

``tokenizer`` (a user's tokenizer as fimflow uses it), ``word_cache``
(encoding fast and exactly), ``tokenizer_pool`` (jobs on the tokenizer in
helper processes), ``fragments`` and ``fim`` (FIM on piece bytes),
``packing``, ``shard_content`` (a bucket's chunks, FIM'd and serialized, in
shard order), ``hashing`` (every hash that decides where data goes),
``records`` (the bytes of a shard) and ``segments`` (reading examples back). Nothing here imports Beam at module level, so each piece can
be tested, benchmarked and reused without a pipeline.
"""
