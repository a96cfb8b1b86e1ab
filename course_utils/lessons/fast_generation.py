"""Companion of notebooks/14_fast_generation.ipynb: why generation is slow and what makes it fast.

Experiment drivers (KV cache timing, prefix reuse, distillation, speculative decoding, MoE), the
γ/temperature and sequence-length widgets, and the exercise checkers. The algorithms live in the
core: ``course_utils.speculative``, ``decode``, ``flash``, ``moe``.

Re-train the shipped draft model (``course_utils/data/fast_generation_draft``) with
``python -m course_utils.lessons.fast_generation``.
"""
from __future__ import annotations

import pathlib
import time

import torch
import torch.nn.functional as F

from .. import assets, decode, plots, speculative
from ..checkpoints import load_checkpoint
from ..lm import hf_forward
from ..model import GPT, KVCache
from ..runtime import seeded
from ..train import cpu_recipe, full_loss, train

DRAFT_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "fast_generation_draft"
DRAFT_RECIPE = dict(steps=600, data_chars=20_000, temperature=2.0, seed=0)
RESULTS = DRAFT_DIR.parent / "fast_generation_distill.json"


# ------------------------------------------------------------------ 1-3. cache
def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, bytes_per_value: int = 4) -> int:
    """Bytes of keys and values cached per token: 2 (K and V) * layers * kv_heads * head_dim * bytes."""
    return 2 * layers * kv_heads * head_dim * bytes_per_value


def cache_tensor_bytes(cache) -> int:
    """The real size of a cache's tensors (course KVCache or a transformers cache)."""
    if isinstance(cache, KVCache):
        tensors = [t for t in cache.k + cache.v if t is not None]
    else:
        tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def step_times(model: GPT, prompt: torch.Tensor, n: int, use_cache: bool) -> list[float]:
    """Seconds of each of ``n`` greedy decode steps of a course GPT, with or without the KV cache."""
    idx, cache, times = prompt, KVCache(model.config.n_layer), []
    model(idx, cache=cache)
    for _ in range(n):
        t = time.perf_counter()
        logits = model(idx[:, -1:], cache=cache).logits if use_cache else model(idx).logits
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        times.append(time.perf_counter() - t)
        idx = torch.cat([idx, nxt], 1)
    return times


def step_time_figure(without: list[float], with_cache: list[float]):
    """Milliseconds per generated token against its position, without and with the KV cache."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(y=[1000 * t for t in without], name="no cache"),
                     go.Scatter(y=[1000 * t for t in with_cache], name="KV cache")])
    fig.update_layout(title="Time per generated token vs position", xaxis_title="generated token",
                      yaxis_title="ms", height=340)
    return fig


@torch.inference_mode()
def prefix_reuse(model, tok, system: str, questions: list[str]) -> dict:
    """Time to first token for each question with and without a cached shared prefix (SmolLM2).

    Returns seconds with/without reuse, the prefix length and the largest logit difference."""
    import copy
    prefix = tok.encode(system)
    cached = hf_forward(model, torch.tensor([prefix]))[1]
    cold, warm, diff = [], [], 0.0
    for q in questions:
        ids = tok.encode(system + q)
        assert ids[:len(prefix)] == prefix, "the question must start at a token boundary after the prefix"
        t = time.perf_counter()
        full = model(input_ids=torch.tensor([ids])).logits[0, -1]
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        reused = hf_forward(model, torch.tensor([ids[len(prefix):]]), copy.deepcopy(cached))[0].logits[0, -1]
        warm.append(time.perf_counter() - t)
        diff = max(diff, float((full - reused).abs().max()))
    return dict(cold_s=cold, warm_s=warm, prefix_tokens=len(prefix), max_logit_diff=diff)


# -------------------------------------------------------------- 5. distillation
@torch.inference_mode()
def activation_scales(smol, tok, prompt: str = "The capital of France is", answer: str = " Paris") -> dict:
    """p(``answer`` | ``prompt``) under fp32 and under int8-mixed with one activation scale per call
    (torch's dynamic quantisation as is) and with one scale per token (:class:`decode.PerTokenInt8`)."""
    ids = torch.tensor([tok.encode(prompt)])
    target = tok.encode(answer)
    if len(target) != 1:
        raise ValueError(f"answer must be one token, {answer!r} is {len(target)}")
    out = {}
    for name, model in (("fp32", smol), ("int8-mixed, one scale per call", decode.with_weights(smol, "int8-mixed", per_token=False)),
                        ("int8-mixed, one scale per token", decode.with_weights(smol, "int8-mixed"))):
        out[name] = float(model(input_ids=ids).logits[0, -1].float().softmax(-1)[target[0]])
    return out


def teacher_windows(teacher: GPT, tok, data_chars: int, block: int = 128, temperature: float = 2.0):
    """The student's training data: non-overlapping windows of the first ``data_chars`` characters,
    their next characters, and the teacher's soft targets log softmax(logits / T), computed once."""
    ids = torch.tensor(tok.encode(assets.shakespeare("small", "train")[:data_chars]))
    n = (len(ids) - 1) // block
    x = ids[: n * block].view(n, block)
    y = ids[1: n * block + 1].view(n, block)
    with torch.no_grad():
        soft = torch.cat([F.log_softmax(teacher(x[i:i + 32]).logits / temperature, -1) for i in range(0, n, 32)])
    return x, y, soft


def distill_loss(temperature: float = 2.0):
    """loss_fn for ``train.train``: T² · KL(teacher_T || student_T) on soft targets (Hinton et al. 2015).

    A batch is (inputs, next characters, teacher log-probabilities at temperature T)."""
    def loss_fn(model: GPT, batch) -> torch.Tensor:
        x, _, target = batch
        student = F.log_softmax(model(x).logits / temperature, -1)
        kl = F.kl_div(student.flatten(0, 1), target.flatten(0, 1), log_target=True, reduction="batchmean")
        return temperature ** 2 * kl
    return loss_fn


def hard_loss(model: GPT, batch) -> torch.Tensor:
    """The usual next-character cross-entropy on the same batches."""
    x, y, _ = batch
    return model(x, y).loss


def train_student(teacher: GPT, tok, soft: bool, steps: int = 300, data_chars: int = 20_000,
                  temperature: float = 2.0, seed: int = 0, callback=None, progress: bool = True, windows=None):
    """A CPU-recipe student (context 128) trained on soft teacher targets or on the hard next characters;
    returns (student, history, validation loss). Same windows, batches, steps and seed for both;
    ``val_loss`` is always plain cross-entropy on held-out text."""
    x, y, target = windows if windows is not None else teacher_windows(teacher, tok, data_chars,
                                                                       temperature=temperature)
    val_data = torch.tensor(tok.encode(val_text()))
    cfg, tcfg = cpu_recipe(tok.vocab_size, block_size=x.size(1), steps=steps, seed=seed,
                           eval_interval=max(1, steps // 6), eval_batches=4)
    g = torch.Generator().manual_seed(seed)
    with seeded(int(torch.randint(2 ** 31, (1,), generator=g))):
        student = GPT(cfg)

    def batch_fn(gen):
        rows = torch.randint(x.size(0), (tcfg.batch_size,), generator=gen)
        return x[rows], y[rows], target[rows]
    history = train(student, None, val_data, tcfg, callback=callback, progress=progress, batch_fn=batch_fn,
                    loss_fn=distill_loss(temperature) if soft else hard_loss,
                    desc="distilled" if soft else "hard labels")
    return student, history, full_loss(student, val_data)


def val_text() -> str:
    """The held-out text every student is scored on (first 30,000 characters of the validation split)."""
    return assets.shakespeare("small", "val")[:30_000]


def validation_loss(model: GPT, tok) -> float:
    return full_loss(model, torch.tensor(tok.encode(val_text())))


def load_distill_results() -> dict:
    """The shipped distilled-vs-hard comparison made by :func:`main`."""
    import json
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def load_draft() -> tuple[GPT, dict]:
    """The shipped distilled draft (trained by :func:`main` with :data:`DRAFT_RECIPE`)."""
    return GPT.load(DRAFT_DIR)


# ---------------------------------------------------------- 6. speculative decoding
def speculative_run(target: GPT, draft: GPT, prompt: torch.Tensor, n: int, gamma: int, temperature: float,
                    seed: int = 0) -> dict:
    """One speculative run vs the target alone (same seed): acceptance, tokens per pass, both timings."""
    t = time.perf_counter()
    out, st = speculative.speculative_generate(target, draft, prompt, n, gamma=gamma, temperature=temperature,
                                               generator=torch.Generator().manual_seed(seed))
    spec_s = time.perf_counter() - t
    t = time.perf_counter()
    target.generate(prompt, n, temperature=temperature, generator=torch.Generator().manual_seed(seed))
    alone_s = time.perf_counter() - t
    return dict(tokens=out, alpha=st.acceptance_rate, tokens_per_pass=st.tokens_per_pass,
                predicted=speculative.expected_tokens_per_pass(st.acceptance_rate, gamma),
                spec_s=spec_s, alone_s=alone_s, speedup=alone_s / spec_s)


def acceptance_figure(grid: dict):
    """Acceptance rate α against temperature, one line per draft length γ (``grid[γ][T]`` as ``speculative_run`` gives)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for g, row in grid.items():
        fig.add_trace(go.Scatter(x=list(row), y=[r["alpha"] for r in row.values()], name=f"γ = {g}", mode="lines+markers"))
    fig.update_layout(title="Acceptance rate vs temperature", xaxis_title="temperature", yaxis_title="α", height=320)
    return fig


@torch.no_grad()
def call_cost_ratio(target: GPT, draft: GPT, prompt: torch.Tensor, repeats: int = 20) -> float:
    """Seconds of one draft decode step / one target decode step (the c of Leviathan et al.)."""
    def step(model):
        cache = KVCache(model.config.n_layer)
        model(prompt, cache=cache)
        t = time.perf_counter()
        for _ in range(repeats):
            model(prompt[:, -1:], cache=cache)
            cache.crop(prompt.size(1))
        return time.perf_counter() - t
    return step(draft) / step(target)


def speculative_widget(target: GPT, draft: GPT, prompt: torch.Tensor, n: int = 60):
    """γ and temperature sliders: measured acceptance, tokens per pass vs the formula, speed-up."""
    import ipywidgets as w
    from IPython.display import HTML, display
    gamma = w.IntSlider(4, min=1, max=8, description="γ (draft tokens)")
    temp = w.FloatSlider(0.8, min=0.0, max=1.5, step=0.1, description="temperature")
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            r = speculative_run(target, draft, prompt, n, gamma.value, temp.value)
            display(HTML(f"acceptance rate α = <b>{r['alpha']:.2f}</b> · tokens per target pass "
                         f"<b>{r['tokens_per_pass']:.2f}</b> (formula (1−α^(γ+1))/(1−α): {r['predicted']:.2f}) · "
                         f"wall-clock speed-up <b>{r['speedup']:.2f}×</b>"))
    gamma.observe(redraw, "value")
    temp.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([gamma, temp]), out])


def memory_widget(layers: int, kv_heads: int, head_dim: int, heads: int, tile: int = 64):
    """Sequence-length slider: KV-cache bytes (formula) and attention score bytes, full vs tiled."""
    import ipywidgets as w
    from IPython.display import HTML, display
    from ..flash import score_bytes
    length = w.IntSlider(2048, min=64, max=8192, step=64, description="sequence length")
    out = w.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            T = length.value
            kv = kv_cache_bytes(layers, kv_heads, head_dim) * T
            full, tiled = score_bytes(T, heads), score_bytes(T, heads, tile=tile)
            display(HTML(f"T = {T}: KV cache <b>{kv / 2**20:.1f} MiB</b> · score matrix of one layer "
                         f"<b>{full / 2**20:.1f} MiB</b> · one {tile}-key tile <b>{tiled / 2**20:.2f} MiB</b>"))
    length.observe(redraw, "value")
    redraw()
    return w.VBox([length, out])


# ------------------------------------------------------------------- 8. MoE
def train_moe(kind: str, tok, steps: int = 150, seed: int = 0, callback=None) -> dict:
    """Train a tiny 'dense', 'moe' (balancing loss, α = 0.01) or 'moe-nobalance' model on the same data;
    validation loss, total/active parameters, expert usage (share of first choices), seconds."""
    from .. import moe
    from ..model import GPTConfig
    from ..train import TrainConfig
    if kind not in ("dense", "moe", "moe-nobalance"):
        raise ValueError(f"kind must be 'dense', 'moe' or 'moe-nobalance', got {kind!r}")
    data = torch.tensor(tok.encode(assets.shakespeare("small", "train")[:100_000]))
    val = torch.tensor(tok.encode(assets.shakespeare("small", "val")[:20_000]))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=48)
    g = torch.Generator().manual_seed(seed)
    with seeded(int(torch.randint(2 ** 31, (1,), generator=g))):
        model = moe.dense_equivalent(cfg, hidden=96) if kind == "dense" else moe.moe_gpt(cfg, 4, 1, hidden=96)
    alpha = 0.01 if kind == "moe" else 0.0

    def loss_fn(m, batch):
        x, y = batch
        loss = m(x, y).loss
        return loss + alpha * moe.aux_loss(m) if kind != "dense" else loss
    tcfg = TrainConfig(steps=steps, batch_size=16, lr=6e-3, min_lr=6e-4, warmup_steps=20, seed=seed,
                       eval_interval=max(1, steps // 5), eval_batches=4)
    t = time.perf_counter()
    history = train(model, data, val, tcfg, callback=callback, loss_fn=loss_fn, desc=kind)
    seconds = time.perf_counter() - t
    usage = None
    if kind != "dense":
        with torch.no_grad():
            model(val[:2048].view(64, 32))
        choice = model.blocks[0].mlp.last_choice[:, 0]
        usage = torch.bincount(choice, minlength=4).float().div(choice.numel()).tolist()
    return dict(kind=kind, model=model, val_loss=full_loss(model, val), usage=usage, seconds=seconds,
                total=model.num_parameters(), active=moe.active_parameters(model), history=history)


@torch.no_grad()
def expert_characters(model: GPT, tok, text: str, top: int = 8) -> dict[int, str]:
    """The characters each expert of the first MoE layer receives most often, on ``text``."""
    ids = torch.tensor(tok.encode(text[: 32 * (len(text) // 32)])).view(-1, 32)
    model(ids)
    choice = model.blocks[0].mlp.last_choice[:, 0]
    chars = ids.flatten()
    out = {}
    for e in range(model.blocks[0].mlp.n_experts):
        got = chars[choice == e]
        counts = torch.bincount(got, minlength=tok.vocab_size)
        out[e] = "".join(plots.show_token(tok.decode([int(i)])) for i in counts.argsort(descending=True)[:top]
                         if counts[i] > 0)
    return out


# --------------------------------------------------------------- exercises
def check_kv_bytes(fn) -> None:
    """fn(layers, kv_heads, head_dim, bytes_per_value) -> bytes per token."""
    for args in ((30, 3, 64, 4), (6, 6, 32, 4), (2, 1, 8, 2)):
        got, want = fn(*args), kv_cache_bytes(*args)
        assert got == want, f"for layers, kv_heads, head_dim, bytes = {args} expected {want:,}, got {got!r}"


def check_accept(fn) -> None:
    """fn(p_x, q_x, u) -> bool, the acceptance rule min(1, p/q)."""
    for p, q, u in ((0.5, 0.25, 0.99), (0.1, 0.4, 0.3), (0.1, 0.4, 0.2), (0.3, 0.3, 0.999), (0.0, 0.2, 0.0)):
        want = speculative.accept(p, q, u)
        assert bool(fn(p, q, u)) == want, f"p(x)={p}, q(x)={q}, u={u}: should be {'kept' if want else 'rejected'}"


def check_tokens_per_pass(fn) -> None:
    """fn(alpha, gamma) -> expected tokens per target pass."""
    for a, g in ((0.7, 4), (0.5, 1), (0.9, 8), (0.0, 3)):
        want = speculative.expected_tokens_per_pass(a, g)
        got = fn(a, g)
        assert abs(got - want) < 1e-6, f"alpha={a}, gamma={g}: expected {want:.4f}, got {got!r}"


def main() -> None:
    """Distilled vs hard-label student at :data:`DRAFT_RECIPE`; saves the distilled one as the draft
    and both results as JSON: ``python -m course_utils.lessons.fast_generation``."""
    import json
    torch.set_num_threads(1)
    teacher, tok, _ = load_checkpoint("shakespeare-char")
    r = DRAFT_RECIPE
    windows = teacher_windows(teacher, tok, r["data_chars"], temperature=r["temperature"])
    out = {"recipe": r, "command": "python -m course_utils.lessons.fast_generation"}
    for soft in (True, False):
        student, history, val = train_student(teacher, tok, soft=soft, steps=r["steps"], seed=r["seed"],
                                              temperature=r["temperature"], windows=windows)
        out["distilled" if soft else "hard"] = {"val_loss": val, "history": history}
        if soft:
            student.save(DRAFT_DIR, tokenizer=tok.to_dict(), recipe=r, val_loss_full=val,
                         command=out["command"])
        print(f"{'distilled' if soft else 'hard labels'}: validation loss {val:.4f}", flush=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
