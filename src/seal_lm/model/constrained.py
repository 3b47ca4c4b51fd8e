"""Constrained decoding: generation that can only write JSON matching a schema, with xgrammar.

At each step xgrammar masks every token that would take the text off the schema's grammar, so a
small model that cannot yet write a well-formed tool call still writes one; which values it chooses
is still its own sampling. The schema is compiled once per (tokenizer, schema); each ``generate``
call gets a fresh logits processor, since it tracks the rows of one batch.
"""

from __future__ import annotations

import functools

XGRAMMAR_MISSING = "Constrained self-edits need xgrammar: pip install 'seal-lm[structured]'."


def json_schema_processor(tokenizer, vocab_size: int, schema: str):
    """A ``generate`` logits processor that keeps every row on JSON valid for ``schema`` (a JSON text)."""
    try:
        import xgrammar.contrib.hf
    except ImportError:
        raise RuntimeError(XGRAMMAR_MISSING) from None
    return xgrammar.contrib.hf.LogitsProcessor(_compiled(tokenizer, vocab_size, schema))


@functools.lru_cache(maxsize=8)
def _compiled(tokenizer, vocab_size: int, schema: str):
    import xgrammar

    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
    return xgrammar.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=False)
