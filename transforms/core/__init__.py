"""The Beam-free core: the tokenizer library and the algorithms the stages wrap.

``tokenizer`` (a user's SentencePiece model as fimflow uses it), ``word_cache``
and ``tokenizer_pool`` (encoding fast and exactly), ``fragments`` and ``fim``
(FIM on piece bytes), ``packing``, ``hashing`` (every hash that decides where
data goes), ``records`` (the bytes of a shard) and ``segments`` (reading
examples back). Nothing here imports Beam at module level, so each piece can
be tested, benchmarked and reused without a pipeline.
"""
