"""Infilling evaluation problems from held-out documents (``transforms.core.eval_tasks``).

In: held-out ``Document``s. Out: per task, up to ``examples_per_task``
problems (``transforms.write.WriteEvalSets`` writes them to
``OUTPUT/eval/<task>.jsonl``), each ``task_id, source, position, language,
prefix, middle, suffix`` (text), and ``order``, ``prompt_ids`` and
``middle_ids``: the prompt laid out and tokenized in the run's FIM format
exactly as training examples are, so a harness scores without re-tokenizing.
The documents are chosen by a keyed hash of the seed and their content (the
same choice on every runner), and each problem's cut by a generator seeded
the same way.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.core.eval_tasks import TASKS
from transforms.core.fim import fim_at
from transforms.core.fim_format import fim_format
from transforms.core.hashing import seeded_rng, shuffle_key
from transforms.core.tokenizer import TokenizerHandle
from transforms.schema import Document, FimConfig


def candidate_problems(doc: Document, seed: int):
    """``(task, (rank, problem))`` for each task the document has a span for; ``rank`` orders the choice."""
    identity = doc.content_hash
    for task, cut in TASKS.items():
        parts = cut(doc.text, seeded_rng("eval", task, seed, identity))
        if parts is None or not parts[1].strip():
            continue
        rank = shuffle_key(seed, task.encode() + identity)
        yield task, (rank, {"task_id": f"{task}/{identity.hex()[:16]}", "source": doc.source,
                            "position": doc.position, "language": doc.language,
                            "prefix": parts[0], "middle": parts[1], "suffix": parts[2]})


class _TokenizeProblemsFn(beam.DoFn):
    """``(task, [(rank, problem)])`` -> ``(task, problems)``: each with its prompt and middle ids, by task id."""

    def __init__(self, tokenizer: TokenizerHandle, config: FimConfig):
        self._tokenizer_handle = tokenizer
        self._config = config

    def setup(self):
        self._tokenizer = self._tokenizer_handle.acquire()

    def _tokenized(self, problem: dict) -> dict:
        tokenizer, text = self._tokenizer, problem["prefix"] + problem["middle"] + problem["suffix"]
        ids = tokenizer.encode_documents_fast([text])[0]
        start = len(problem["prefix"])
        # The format's first order: PSM where it has one (what infilling harnesses prompt with).
        order = next(iter(fim_format(self._config.format).orders))
        prompt, middle = fim_at(ids, text, start, start + len(problem["middle"]), order == "spm", self._config,
                                tokenizer)
        return {**problem, "order": order, "prompt_ids": prompt, "middle_ids": middle}

    def process(self, task_and_problems):
        task, problems = task_and_problems
        # Identical held-out documents give the same problem: it counts once.
        unique = {p["task_id"]: p for _, p in problems}
        yield task, [self._tokenized(unique[k]) for k in sorted(unique)]


class EvalProblems(beam.PTransform):
    """``PCollection[Document]`` (held out) -> ``PCollection[(task, [problem])]``, one element per task."""

    def __init__(self, examples_per_task: int, seed: int, tokenizer: TokenizerHandle, config: FimConfig):
        super().__init__()
        self._examples = examples_per_task
        self._seed = seed
        self._fn = _TokenizeProblemsFn(tokenizer, config)

    def expand(self, documents):
        return (documents
                | "Problems" >> beam.FlatMap(candidate_problems, self._seed)
                | "Choose" >> beam.combiners.Top.SmallestPerKey(
                    self._examples, key=lambda rank_problem: (rank_problem[0], rank_problem[1]["task_id"]))
                | "Tokenize" >> beam.ParDo(self._fn))
