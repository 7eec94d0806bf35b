"""PyTorch eager baselines of echo4o's CPU criterion benches (issue #16): the same computation at
the same shapes, f32, on the same threads, so BENCHMARKS.md can put both columns side by side.

Run through `scripts/torch_cpu_baselines.sh`, which pins the PyTorch version, runs the criterion
benches in the same session and joins the two. Alone:

    python3 scripts/torch_cpu_baselines.py --threads 2 --layout layout.json --out torch.json

`--layout` is what `cargo run --release --example train_step_layout` prints: the prompt lengths
and reference counts of the batches `cargo bench --bench train` trains on.

Each bench is timed as criterion times it: a warm-up, then 10 samples of as many iterations as
fit the measurement time, the median of the per-iteration times reported (with the fastest and
slowest sample). Weights are random (timing does not depend on them). Not mirrored: the
`vae_decode/*` benches and the `attention_reference/*` ones (echo4o's own in-process baselines).
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def rms(x, w, eps=1e-6):
    dtype = x.dtype
    x = x.float()
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def rope_tables(positions, head_dim, theta):
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    freqs = torch.tensor(positions, dtype=torch.float32)[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos()[:, None, :], emb.sin()[:, None, :]


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Cfg:
    def __init__(self, hidden, inter, layers, heads, kv, head_dim, vocab, latent_dim, max_latent):
        self.hidden, self.inter, self.layers = hidden, inter, layers
        self.heads, self.kv, self.head_dim = heads, kv, head_dim
        self.vocab, self.latent_dim, self.max_latent = vocab, latent_dim, max_latent


# The configurations of benches/model.rs and benches/train.rs.
MID = dict(hidden=512, inter=1536, heads=8, kv=2, head_dim=64, vocab=1000, latent_dim=64, max_latent=32)
TINY = Cfg(64, 128, 2, 4, 2, 16, 1000, 64, 16)
# The shipped shapes model; its latent width comes from the layout the example prints (the
# checkpoint's codec decides it: 192 for the pixel codec, 256 for the 16-token linear one).
SHAPES = dict(hidden=256, inter=512, layers=3, heads=4, kv=2, head_dim=64, vocab=1000, max_latent=16)


def param(*shape, grad):
    return torch.nn.Parameter(torch.randn(*shape) * 0.02, requires_grad=grad)


class Expert(torch.nn.Module):
    """One expert of one MoT layer: Qwen2 attention projections with q/k norms, SwiGLU MLP."""

    def __init__(self, c):
        super().__init__()
        h, q, kv = c.hidden, c.heads * c.head_dim, c.kv * c.head_dim
        self.c = c
        self.q, self.k, self.v = torch.nn.Linear(h, q), torch.nn.Linear(h, kv), torch.nn.Linear(h, kv)
        self.o = torch.nn.Linear(q, h, bias=False)
        self.q_norm = torch.nn.Parameter(torch.ones(c.head_dim))
        self.k_norm = torch.nn.Parameter(torch.ones(c.head_dim))
        self.in_norm = torch.nn.Parameter(torch.ones(h))
        self.post_norm = torch.nn.Parameter(torch.ones(h))
        self.gate = torch.nn.Linear(h, c.inter, bias=False)
        self.up = torch.nn.Linear(h, c.inter, bias=False)
        self.down = torch.nn.Linear(c.inter, h, bias=False)

    def qkv(self, h, cos, sin):
        c, n = self.c, h.shape[0]
        x = rms(h, self.in_norm)
        q = rms(self.q(x).view(n, c.heads, c.head_dim), self.q_norm)
        k = rms(self.k(x).view(n, c.kv, c.head_dim), self.k_norm)
        return rope(q, cos, sin), rope(k, cos, sin), self.v(x).view(n, c.kv, c.head_dim)

    def mlp(self, h):
        x = rms(h, self.post_norm)
        return self.down(F.silu(self.gate(x)) * self.up(x))


def attend(q, k, v, mask=None):
    """`[L, H, D]` queries over `[S, KV, D]` keys and values. Key/value heads are repeated
    before SDPA: with `enable_gqa=True` torch 2.5 takes its math path on the CPU (57 ms instead
    of 15 ms at 1024x1024, 8/2 heads, here), and a baseline should be PyTorch at its fastest."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask
    )
    return out[0].transpose(0, 1).reshape(q.shape[0], -1)


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.und, self.gen = Expert(c), Expert(c)

    def forward(self, h, gen_rows, und_rows, cos, sin, segments, cache=None):
        """`segments`: (start, length, mask) blocks attended separately (packed training), or
        None for one block over `cache + h` without a mask."""
        def split(fn, *tensors):
            if und_rows is None:
                return fn(self.gen, *tensors)
            outs = [fn(e, *(t[r] for t in tensors)) for e, r in ((self.und, und_rows), (self.gen, gen_rows))]
            if isinstance(outs[0], tuple):
                return tuple(_merge(h.shape[0], und_rows, gen_rows, a, b) for a, b in zip(*outs))
            return _merge(h.shape[0], und_rows, gen_rows, *outs)

        q, k, v = split(lambda e, x, c_, s_: e.qkv(x, c_, s_), h, cos, sin)
        if segments is None:
            if cache is not None:
                k, v = torch.cat([cache[0], k]), torch.cat([cache[1], v])
            attn = attend(q, k, v)
        else:
            attn = torch.cat([attend(q[s:s + n], k[s:s + n], v[s:s + n], m) for s, n, m in segments])
        h = h + split(lambda e, x: e.o(x), attn)
        return h + split(lambda e, x: e.mlp(x), h)


def _merge(n, und_rows, gen_rows, a, b):
    out = a.new_empty((n,) + a.shape[1:])
    out[und_rows] = a
    out[gen_rows] = b
    return out


def sincos_2d(side, hidden):
    quarter = hidden // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    parts = []
    for grid in (ys, xs):
        out = grid.reshape(-1, 1).double() * omega[None]
        parts += [out.sin(), out.cos()]
    return torch.cat(parts, 1).float()


class Bagel(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c.vocab, c.hidden)
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm_und = torch.nn.Parameter(torch.ones(c.hidden))
        self.norm_gen = torch.nn.Parameter(torch.ones(c.hidden))
        self.vae2llm = torch.nn.Linear(c.latent_dim, c.hidden)
        self.llm2vae = torch.nn.Linear(c.hidden, c.latent_dim)
        self.t1, self.t2 = torch.nn.Linear(256, c.hidden), torch.nn.Linear(c.hidden, c.hidden)
        self.register_buffer("pos", sincos_2d(c.max_latent, c.hidden))

    def temb(self, t):
        freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(128) / 128)
        args = torch.tensor([t], dtype=torch.float32)[:, None] * freqs[None]
        return self.t2(F.silu(self.t1(torch.cat([args.cos(), args.sin()], -1))))

    def latent_inputs(self, x, t, side):
        ids = [r * self.c.max_latent + col for r in range(side) for col in range(side)]
        return self.vae2llm(x) + self.temb(t) + self.pos[ids]

    def prefill(self, ids):
        """The prompt through the understanding expert, causally: the per-layer KV cache."""
        c, n = self.c, len(ids)
        h = self.embed(torch.tensor(ids))
        cos, sin = rope_tables(list(range(n)), c.head_dim, 1e6)
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        cache = []
        for layer in self.layers:
            q, k, v = layer.und.qkv(h, cos, sin)
            cache.append((k, v))
            h = h + layer.und.o(attend(q, k, v, mask))
            h = h + layer.und.mlp(h)
        return cache, n

    def velocity(self, cache, rope_pos, x, t, side):
        """`_forward_flow` without CFG: `[start; latents; end]` over the cache, one RoPE position."""
        c, n = self.c, x.shape[0]
        marks = self.embed(torch.tensor([998, 999]))
        h = torch.cat([marks[:1], self.latent_inputs(x, t, side), marks[1:]])
        gen = torch.arange(1, n + 1)
        und = torch.tensor([0, n + 1])
        cos, sin = rope_tables([rope_pos] * (n + 2), c.head_dim, 1e6)
        for layer, kv in zip(self.layers, cache):
            h = layer(h, gen, und, cos, sin, None, kv)
        return self.llm2vae(rms(h[1:n + 1], self.norm_gen))


def timed(fn, warm_up=1.0, measurement=4.0, samples=10):
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < warm_up or runs == 0:
        fn()
        runs += 1
    per = (time.perf_counter() - start) / runs
    iters = max(1, int(measurement / samples / per))
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t0) / iters)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3}


def model_benches():
    out = {}
    with torch.no_grad():
        c = Cfg(layers=1, **MID)
        layer = Layer(c)
        x = torch.randn(256, c.hidden)
        cos, sin = rope_tables([0] * 256, c.head_dim, 1e6)
        out["model/mot_layer/mid_256tok"] = timed(lambda: layer(x, None, None, cos, sin, None))

        for name, (lq, lk, h, kv) in {
            "model/attention/1024x1024_h8_kv2_d64": (1024, 1024, 8, 2),
            "model/attention/shapes_64x88_h4_kv2_d64": (64, 88, 4, 2),
        }.items():
            q, k = torch.randn(lq, h, 64), torch.randn(lk, kv, 64)
            out[name] = timed(lambda: attend(q, k, k).contiguous())

        for name, c, n, prompt in [
            ("model/flow_forward/tiny_16tok", TINY, 16, 7),
            ("model/flow_forward/mid4_256tok", Cfg(layers=4, **MID), 256, 16),
        ]:
            model = Bagel(c)
            cache, rope_pos = model.prefill(list(range(prompt)))
            x = torch.randn(n, c.latent_dim)
            side = int(n ** 0.5)
            out[name] = timed(lambda: model.velocity(cache, rope_pos, x, 0.5, side))

        # One guided step: conditional and unconditional passes, text CFG 4 with the official
        # global renorm, an Euler update.
        c = Cfg(layers=4, **MID)
        model = Bagel(c)
        cond = model.prefill(list(range(16)))
        uncond = ([(k[:0], v[:0]) for k, v in cond[0]], 0)
        x = torch.randn(256, 64)

        def step():
            v_c = model.velocity(*cond, x, 0.9, 16)
            v_u = model.velocity(*uncond, x, 0.9, 16)
            v = v_u + 4.0 * (v_c - v_u)
            v = v * (v_c.norm() / v.norm()).clamp(max=1.0)
            return x - v * 0.02

        out["model/sampler_step/mid4_256tok_cfg"] = timed(step)
    return out


def train_bench(layout):
    """One step of the shipped shapes model: packed batch, per-example masks, flow-matching MSE,
    backward, gradient clipping at 1, AdamW (0.9, 0.95, eps 1e-15), EMA 0.999."""
    c = Cfg(latent_dim=layout["latent_dim"], **SHAPES)
    model = Bagel(c)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-15, weight_decay=0.0)
    m, dim = layout["latent_tokens"], layout["latent_dim"]
    side = int(round(m ** 0.5))
    batches = []
    for examples in layout["batches"]:
        batches.append([(e["text"], e["refs"]) for e in examples])

    def step(batch):
        pieces, gen, segments, latent_rows, rows = [], [], [], [], 0
        targets, positions = [], []
        marks = model.embed(torch.tensor([998, 999]))
        for text, refs in batch:
            start, rope_pos = rows, 0
            images = [(torch.randn(m, dim), 0.0) for _ in range(refs)]
            x0, noise, t = torch.randn(m, dim), torch.randn(m, dim), float(torch.rand(()))
            images.append(((1 - t) * x0 + t * noise, t))
            masks = []
            for k, (latents, tk) in enumerate(images):
                if k == len(images) - 1 and text:
                    pieces.append(model.embed(torch.randint(0, 990, (text,))))
                    positions += list(range(rope_pos, rope_pos + text))
                    masks.append(("causal", text))
                    rope_pos += text
                    rows += text
                pieces += [marks[:1], model.latent_inputs(latents, tk, side), marks[1:]]
                gen.append(torch.arange(rows + 1, rows + 1 + m))
                if k == len(images) - 1:
                    latent_rows.append(torch.arange(rows + 1, rows + 1 + m))
                    targets.append(noise - x0)
                positions += [rope_pos] * (m + 2)
                masks.append(("full", m + 2))
                rope_pos += 1
                rows += m + 2
            n = rows - start
            mask = torch.zeros(n, n, dtype=torch.bool)
            at = 0
            for kind, length in masks:
                block = torch.ones(length, length, dtype=torch.bool)
                mask[at:at + length, :at] = True
                mask[at:at + length, at:at + length] = block.tril() if kind == "causal" else block
                at += length
            segments.append((start, n, mask))
        h = torch.cat(pieces)
        gen = torch.cat(gen)
        is_gen = torch.zeros(rows, dtype=torch.bool)
        is_gen[gen] = True
        und = (~is_gen).nonzero()[:, 0]
        cos, sin = rope_tables(positions, c.head_dim, 1e6)
        for layer in model.layers:
            h = layer(h, gen, und, cos, sin, segments)
        pred = model.llm2vae(rms(h[torch.cat(latent_rows)], model.norm_gen))
        loss = F.mse_loss(pred, torch.cat(targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - 0.999)
        return loss

    counter = [0]

    def next_step():
        counter[0] += 1
        return step(batches[counter[0] % len(batches)])

    return {"train/train_step/shapes_b16": timed(next_step, warm_up=2.0, measurement=8.0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout", required=True, help="output of the train_step_layout example")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.layout) as f:
        layout = json.load(f)
    results = model_benches()
    results.update(train_bench(layout))
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    for name, r in results.items():
        print(f"{name:45s} {r['median_ms']:10.3f} ms  [{r['min_ms']:.3f}, {r['max_ms']:.3f}]")


if __name__ == "__main__":
    main()
