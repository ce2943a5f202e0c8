# The exact script behind the H100 lever numbers of ../trained_model.md (kept as run; not part of the package). It was
# written for a tree without this branch's options, so it patches them in: --v wraps XUNet.forward as
# XUNetConfig.prediction = "v" does and replaces training.loss_on by the v loss (TrainConfig.loss = "v"), --perm wraps
# DevicePairBatches.sample as TrainConfig.permute_colours does. Today the same runs are
# benchmarks/conditioning_probe.py with --loss v --set prediction='v' / --permute-colours (benchmarks/
# conditioning_levers.sh). Usage: python3 levers_driver.py screen SRN_ROOT unused [--v] [--perm] [--attn32]
# [--arch concat_unet] [--budget SECONDS]   (run from the repository root with PYTHONPATH=$PWD, on CUDA).
import argparse, dataclasses, time, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
import generators.training as T, generators.view_pairs as VP
from generators.xunet import XUNet, PRESETS
from scenes.srn import list_srn_instances, read_srn_instance
p = argparse.ArgumentParser()
p.add_argument("mode"); p.add_argument("data"); p.add_argument("out")
p.add_argument("--small", action="store_true"); p.add_argument("--v", action="store_true")
p.add_argument("--perm", action="store_true"); p.add_argument("--attn32", action="store_true")
p.add_argument("--arch", default="xunet"); p.add_argument("--batch", type=int, default=128)
p.add_argument("--budget", type=float, default=200); p.add_argument("--every", type=int, default=500)
a = p.parse_args()
cfg = PRESETS["tiny"]
if a.small: cfg = dataclasses.replace(cfg, ch_mult=(1, 1, 2), attn_resolutions=(32, 16, 8))
if a.attn32: cfg = dataclasses.replace(cfg, attn_resolutions=(32, 16, 8))
if a.v:
    fwd = XUNet.forward
    def vfwd(self, z, l, *r, **k):
        l4 = l.to(z.device, torch.float32)[:, None, None, None]
        return torch.sigmoid(l4).sqrt() * fwd(self, z, l, *r, **k).float() + torch.sigmoid(-l4).sqrt() * z.float()
    XUNet.forward = vfwd
    lo = T.loss_on
    def vloss(model, batch, noise, schedule, rows=slice(None), *_):
        b = {n: t[rows] for n, t in batch.items()}; nz = {n: t[rows] for n, t in noise.items()}
        ls = schedule.logsnr(nz["t"]); al, si = (s[:, None, None, None] for s in schedule.alpha_sigma(ls))
        e = model(al * b["target_image"] + si * nz["eps"], ls, b["cond_image"], b["cond_c2w"], b["target_c2w"],
                  b["intrinsics"], cond_mask=nz["keep"])
        return (((e.float() - nz["eps"]) ** 2).mean((1, 2, 3)) * (1 + torch.exp(-ls.float()))).mean()
    T.loss_on = vloss
if a.perm:
    smp = VP.DevicePairBatches.sample
    def psample(self, n, g):
        b = smp(self, n, g)
        i = torch.argsort(torch.rand(n, 3, generator=g, device=self.device), 1)[:, :, None, None].expand_as(b["cond_image"])
        return {**b, "cond_image": b["cond_image"].gather(1, i), "target_image": b["target_image"].gather(1, i)}
    VP.DevicePairBatches.sample = psample
scenes = [read_srn_instance(f) for f in list_srn_instances(a.data, "train")]
tc = T.TrainConfig(steps=10 ** 6, batch_size=a.batch, lr=2e-3, warmup_steps=200, checkpoint_every=1000, seed=0,
                   device="cuda", architecture=a.arch)
if a.mode == "train":
    T.train_generator(scenes, cfg, tc, Path(a.out)); raise SystemExit
def probe(sc, per, seed):
    pr = VP.ViewPairs(sc, 32); rng = np.random.default_rng(seed); it = []
    for s, im in enumerate(pr.images):
        o = pr.images[(s + 1) % len(pr.images)]
        for _ in range(per):
            c, t = rng.choice(len(im), 2, replace=False)
            it.append((im[c], im[t], pr.c2w[s][c], pr.c2w[s][t], pr.intrinsics[s], o[rng.integers(len(o))]))
    return [torch.stack([x[j] for x in it]).float().cuda() for j in range(6)]
@torch.no_grad()
def errs(m, pb):
    m.eval(); g = torch.Generator().manual_seed(123); c, t, cc, tc2, k, w = pb; out = []
    for lv in (-8.0, -4.0, -2.0, 0.0):
        e = torch.randn(t.shape, generator=g).cuda(); ls = torch.full((t.shape[0],), lv, device="cuda")
        al, si = (float(s) for s in T.CosineLogSNRSchedule.alpha_sigma(torch.tensor(lv))); z = al * t + si * e
        out.append(f"L{lv:+.0f} " + "/".join(f"{F.mse_loss(((z - si * m(z, ls, x, cc, tc2, k)) / al).clamp(-1, 1), t).item():.4f}" for x in (c, w)))
    m.train(); return " ".join(out)
held = probe([read_srn_instance(f) for s in ("val", "test") for f in list_srn_instances(a.data, s)], 8, 0)
seen = probe(scenes, 2, 1)
run = T.TrainingRun(cfg, tc, torch.device("cuda")); pairs = VP.DevicePairBatches(VP.ViewPairs(scenes, 32), "cuda")
print("#", vars(a), run.parameter_count(), flush=True); t0 = time.perf_counter(); ls = []
for step in range(1, 10 ** 7):
    ls.append(run.train_step(pairs.sample(a.batch, run.data_generator))); over = time.perf_counter() - t0 > a.budget
    if step % a.every == 0 or over:
        print(f"step {step} loss {torch.stack(ls).mean().item():.4f} held {errs(run.model, held)} | train {errs(run.model, seen)} ({time.perf_counter() - t0:.0f} s)", flush=True); ls = []
    if over: break
print(f"final EMA step {step}: held {errs(run.ema, held)} | train {errs(run.ema, seen)}", flush=True)
