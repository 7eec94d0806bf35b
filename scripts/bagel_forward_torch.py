"""One BAGEL-7B-MoT flow forward in plain PyTorch (bf16, random weights): the GPU baseline that
`examples/bagel_full_size.rs` is compared with in BENCHMARKS.md.

The same computation as echo4o's `Bagel::velocity` (and the official `_forward_flow` without
CFG): a prompt prefilled into a KV cache by the understanding expert, then the image block
`[<|vision_start|>; vae2llm(x) + temb(t) + pos; <|vision_end|>]` through every MoT layer (markers on
the understanding weights, latent tokens on the generation weights), attention over
`[cache; block]`, non-causal, one RoPE position for the block; `norm_moe_gen`, `llm2vae`.
RMSNorms and q/k norms in f32 as the official code; attention through
`torch.nn.functional.scaled_dot_product_attention` (flash kernels on Hopper).

    python3 scripts/bagel_forward_torch.py --sizes 512 1024 --iters 5
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F

H, NH, KV, HD, I = 3584, 28, 4, 128, 18944
VOCAB, EPS, THETA = 152064, 1e-6, 1_000_000.0
LATENT_DIM, MAX_LATENT = 64, 64


def rms(x, w):
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
    return w * x.to(dtype)


class Expert:
    def __init__(self, dev, dt):
        r = lambda *s: torch.randn(*s, device=dev, dtype=dt) * 0.02
        self.q, self.qb = r(NH * HD, H), r(NH * HD)
        self.k, self.kb = r(KV * HD, H), r(KV * HD)
        self.v, self.vb = r(KV * HD, H), r(KV * HD)
        self.o = r(H, NH * HD)
        self.q_norm = torch.ones(HD, device=dev, dtype=dt)
        self.k_norm = torch.ones(HD, device=dev, dtype=dt)
        self.in_norm = torch.ones(H, device=dev, dtype=dt)
        self.post_norm = torch.ones(H, device=dev, dtype=dt)
        self.gate, self.up, self.down = r(I, H), r(I, H), r(H, I)

    def qkv(self, h, cos, sin):
        x = rms(h, self.in_norm)
        n = x.shape[0]
        q = F.linear(x, self.q, self.qb).view(n, NH, HD)
        k = F.linear(x, self.k, self.kb).view(n, KV, HD)
        v = F.linear(x, self.v, self.vb).view(n, KV, HD)
        q, k = rms(q, self.q_norm), rms(k, self.k_norm)
        return rope(q, cos, sin), rope(k, cos, sin), v

    def mlp(self, h):
        x = rms(h, self.post_norm)
        return F.linear(F.silu(F.linear(x, self.gate)) * F.linear(x, self.up), self.down)


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def rope_tables(positions, dev, dt):
    inv = 1.0 / THETA ** (torch.arange(0, HD, 2, device=dev, dtype=torch.float32) / HD)
    f = positions.float()[:, None] * inv[None, :]
    emb = torch.cat([f, f], -1)
    return emb.cos().to(dt), emb.sin().to(dt)


def attend(q, k, v, causal):
    # [n, heads, hd] -> [1, heads, n, hd]; grouped-query heads repeated for SDPA.
    q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))
    k = k.repeat_interleave(NH // KV, 1)
    v = v.repeat_interleave(NH // KV, 1)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return o[0].transpose(0, 1).reshape(-1, NH * HD)


class Bagel:
    def __init__(self, layers, dev, dt):
        self.layers = [(Expert(dev, dt), Expert(dev, dt)) for _ in range(layers)]
        self.embed = torch.randn(VOCAB, H, device=dev, dtype=dt) * 0.02
        self.norm_gen = torch.ones(H, device=dev, dtype=dt)
        self.vae2llm = (torch.randn(H, LATENT_DIM, device=dev, dtype=dt) * 0.02, torch.zeros(H, device=dev, dtype=dt))
        self.llm2vae = (torch.randn(LATENT_DIM, H, device=dev, dtype=dt) * 0.02, torch.zeros(LATENT_DIM, device=dev, dtype=dt))
        self.t_mlp = (torch.randn(H, 256, device=dev, dtype=dt) * 0.02, torch.randn(H, H, device=dev, dtype=dt) * 0.02)
        self.pos = torch.randn(MAX_LATENT * MAX_LATENT, H, device=dev, dtype=dt) * 0.02
        self.dev, self.dt = dev, dt

    def prefill(self, ids):
        h = self.embed[ids]
        cos, sin = rope_tables(torch.arange(len(ids), device=self.dev), self.dev, self.dt)
        cache = []
        for und, _ in self.layers:
            q, k, v = und.qkv(h, cos, sin)
            cache.append((k, v))
            h = h + F.linear(attend(q, k, v, True), und.o)
            h = h + und.mlp(h)
        return cache, len(ids)

    def temb(self, t):
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=self.dev, dtype=torch.float32) / half)
        a = t * freqs
        feats = torch.cat([a.cos(), a.sin()])[None].to(self.dt)
        return F.linear(F.silu(F.linear(feats, self.t_mlp[0])), self.t_mlp[1])

    def velocity(self, cache, rope_pos, x, t, pos_ids, markers):
        n = x.shape[0]
        lat = F.linear(x.to(self.dt), *self.vae2llm) + self.temb(t) + self.pos[pos_ids]
        h = torch.cat([self.embed[markers[:1]], lat, self.embed[markers[1:]]])
        positions = torch.full((n + 2,), rope_pos, device=self.dev)
        cos, sin = rope_tables(positions, self.dev, self.dt)
        und_rows = torch.tensor([0, n + 1], device=self.dev)
        for (und, gen), (ck, cv) in zip(self.layers, cache):
            qu, ku, vu = und.qkv(h[und_rows], cos[:2], sin[:2])
            qg, kg, vg = gen.qkv(h[1 : n + 1], cos[:n], sin[:n])
            q = torch.cat([qu[:1], qg, qu[1:]])
            k = torch.cat([ck, ku[:1], kg, ku[1:]])
            v = torch.cat([cv, vu[:1], vg, vu[1:]])
            o = attend(q, k, v, False)
            a = torch.cat([F.linear(o[:1], und.o), F.linear(o[1 : n + 1], gen.o), F.linear(o[n + 1 :], und.o)])
            h = h + a
            m = torch.cat([und.mlp(h[:1]), gen.mlp(h[1 : n + 1]), und.mlp(h[n + 1 :])])
            h = h + m
        out = rms(h[1 : n + 1], self.norm_gen)
        return F.linear(out, *self.llm2vae).float()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--iters", type=int, default=5)
    args = p.parse_args()
    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = Bagel(args.layers, dev, dt)
    ids = torch.arange(1000, 1000 + args.prompt, device=dev)
    markers = torch.tensor([151652, 151653], device=dev)
    with torch.inference_mode():
        cache, rope_pos = model.prefill(ids)
        torch.cuda.synchronize()
        print(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name()}, bf16, {args.layers} layers, "
              f"{args.prompt}-token prompt; build + prefill {time.perf_counter() - t0:.2f} s")
        for size in args.sizes:
            side = size // 16
            n = side * side
            pos_ids = (torch.arange(side, device=dev)[:, None] * MAX_LATENT + torch.arange(side, device=dev)[None]).flatten()
            x = torch.randn(n, LATENT_DIM, device=dev)
            model.velocity(cache, rope_pos, x, 0.5, pos_ids, markers)  # warm-up
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(args.iters):
                v = model.velocity(cache, rope_pos, x, 0.5, pos_ids, markers)
            torch.cuda.synchronize()
            s = (time.perf_counter() - t) / args.iters
            print(f"  {size}x{size} ({n} latent tokens): one flow forward {s:.4f} s (mean of {args.iters}), "
                  f"velocity {tuple(v.shape)}, peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
