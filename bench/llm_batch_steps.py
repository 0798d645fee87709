"""Multi-sequence decoding on the local model: cost per step and equality to one at a time.

For the first `--sequences` sample facet prompts, first as the local backend runs them
(one llama.cpp context, the shared prefix cached, the conversation's own part evaluated,
then `--steps` greedy tokens fed one at a time), then in one context holding every
prompt as its own sequence (`n_seq_max`, one KV stream per sequence, the shared prefix
evaluated once and copied): each sequence's own part evaluated alone, then each step one
batch with one token per sequence (the tokens the one-at-a-time run chose). Prints the
CPU time per sequence-step both ways and whether each sequence's logits are bitwise
equal to the one-at-a-time ones (after the prompt, and after each step), the largest
difference and whether the greedy token agrees.

Offline. Usage (heavy: wrap in `flock /work/heavy.lock`):
`python bench/llm_batch_steps.py [--sequences 4] [--steps 12]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from llm_speed import prompts  # noqa: E402

from clio.llm.local import ContextPool, default_model_path  # noqa: E402

N_BATCH = 512


def one_at_a_time(
    parts: list[tuple[str, str]], steps: int
) -> tuple[list[list[np.ndarray]], list[list[int]], float]:
    """Logits after the prompt and after each step, the tokens fed, CPU s of the steps."""
    pool = ContextPool(default_model_path(), size=1, threads=1, context_tokens=4096)
    logits_out, tokens_out, step_seconds = [], [], 0.0
    with pool.context() as context:
        for shared, own in parts:
            shared_tokens = context.tokenize(shared.encode(), bos=True)
            logits = context.begin(shared_tokens, context.tokenize(own.encode(), bos=False))
            seen, fed = [np.array(logits)], []
            start = time.thread_time()
            for _ in range(steps):
                token = int(np.argmax(logits))
                fed.append(token)
                logits = context.feed([token])
                seen.append(np.array(logits))
            step_seconds += time.thread_time() - start
            logits_out.append(seen)
            tokens_out.append(fed)
    pool.close()
    return logits_out, tokens_out, step_seconds


class MultiSequence:
    """One llama.cpp context with one KV stream per sequence, driven by llama_batch."""

    def __init__(self, sequences: int):
        import llama_cpp
        from llama_cpp._internals import LlamaContext, LlamaModel

        self.lib = llama_cpp
        self.model = LlamaModel(
            path_model=str(default_model_path()),
            params=llama_cpp.llama_model_default_params(),
            verbose=False,
        )
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = 4096 * sequences
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = sequences
        params.kv_unified = False  # each sequence's cache laid out as in its own context
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.swa_full = True
        params.n_threads = params.n_threads_batch = 1
        self.context = LlamaContext(model=self.model, params=params, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.context.ctx)
        self.batch: Any = llama_cpp.llama_batch_init(N_BATCH, 0, sequences)
        self.n_vocab = self.model.n_vocab()

    def tokenize(self, text: str, *, bos: bool) -> list[int]:
        return self.model.tokenize(text.encode(), add_bos=bos, special=False)

    def decode(self, items: list[tuple[int, int, list[int]]]) -> list[np.ndarray]:
        """One batch of (sequence, first position, tokens); logits after each item."""
        batch, last = self.batch, []
        batch.n_tokens = 0
        for seq, first, tokens in items:
            for j, token in enumerate(tokens):
                i = batch.n_tokens
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, first + j, 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = j == len(tokens) - 1
                batch.n_tokens += 1
            last.append(batch.n_tokens - 1)
        if self.lib.llama_decode(self.context.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [
            np.ctypeslib.as_array(
                self.lib.llama_get_logits_ith(self.context.ctx, i), shape=(self.n_vocab,)
            ).copy()
            for i in last
        ]

    def prompt(self, seq: int, first: int, tokens: list[int]) -> np.ndarray:
        """Evaluate one sequence's tokens alone, in chunks as `Llama.eval` does."""
        logits = None
        for k in range(0, len(tokens), N_BATCH):
            logits = self.decode([(seq, first + k, tokens[k : k + N_BATCH])])[0]
        assert logits is not None
        return logits

    def copy(self, source: int, target: int) -> None:
        self.lib.llama_memory_seq_cp(self.memory, source, target, -1, -1)


def batched(
    parts: list[tuple[str, str]], tokens: list[list[int]], steps: int
) -> tuple[list[list[np.ndarray]], float]:
    model = MultiSequence(len(parts))
    shared = model.tokenize(parts[0][0], bos=True)
    model.prompt(0, 0, shared)
    for seq in range(1, len(parts)):
        model.copy(0, seq)
    seen, positions = [], []
    for seq, (_, own) in enumerate(parts):
        own_tokens = model.tokenize(own, bos=False)
        seen.append([model.prompt(seq, len(shared), own_tokens)])
        positions.append(len(shared) + len(own_tokens))
    start = time.thread_time()
    for step in range(steps):
        items = [(seq, positions[seq] + step, [tokens[seq][step]]) for seq in range(len(parts))]
        for seq, logits in enumerate(model.decode(items)):
            seen[seq].append(logits)
    return seen, time.thread_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    parts = prompts(args.sequences)
    alone, tokens, alone_seconds = one_at_a_time(parts, args.steps)
    together, together_seconds = batched(parts, tokens, args.steps)
    n = args.sequences * args.steps
    print(
        f"{args.sequences} sequences x {args.steps} steps: {1000 * alone_seconds / n:.1f} ms "
        f"per sequence-step one at a time, {1000 * together_seconds / n:.1f} ms batched"
    )
    for seq in range(args.sequences):
        pairs = list(zip(alone[seq], together[seq], strict=True))
        equal = [bool(np.array_equal(a, b)) for a, b in pairs]
        greedy = sum(int(np.argmax(a)) == int(np.argmax(b)) for a, b in pairs)
        largest = max(float(np.abs(a - b).max()) for a, b in pairs)
        print(
            f"  sequence {seq}: after the prompt bitwise equal {equal[0]}; steps bitwise "
            f"equal {sum(equal[1:])}/{args.steps}; largest difference {largest:.3g}; "
            f"greedy token equal {greedy}/{len(pairs)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
