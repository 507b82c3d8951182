#!/usr/bin/env python3
"""Train wanwatch's three ONNX models on public RTT traces and write them with onnx.helper.

    pip install -r onnx/requirements.txt
    python3 onnx/train.py [--datasets ../shared/datasets] [--out onnx] [--seed 7] [--quick]

Why not PyTorch: its wheel pulls ~3 GB of CUDA libraries onto a machine that trains these tiny
models in two or three minutes on a CPU. autograd differentiates plain numpy; the forward passes
below are written once and exported op by op, and the export is checked against onnx's reference
evaluator before anything is written.

What the models see (the Rust side, src/detect/features.rs, builds the same thing):
  * one channel at a time (a target's median RTT, its loss, DNS time, a CSV column in replay);
  * robust statistics per channel, refreshed every 60 steps from the last 1440 present values:
    median m and scale s = max(1.4826 * MAD, 1% of |m|, 1e-6);
  * u = asinh((x - m) / s): one robust sigma is ~1, a 1000-sigma spike is ~7.6, so outliers
    cannot saturate the LSTM;
  * a window of 60 steps x 4 features: u (0 where missing), present (1/0), sin and cos of the
    time of day. Missing values are explicit: u=0 with present=0 is "no data", never "perfect".

Models (input shapes fixed, opset 17):
  forecaster.onnx   window [1,60,4] -> quantiles [1,15,3]  (q10, q50, q90 of u, next 15 steps)
                    LSTM(24) with additive attention over its 60 outputs, then two dense layers.
  autoencoder.onnx  flat [1,120] (u*present, present) -> reconstruction [1,60] of u
  classifier.onnx   flat [1,120] -> probabilities [1,5]: normal, spike, level_shift, jitter, dropout

Data: RIPE Atlas RTT traces (../shared/datasets/ripe-rtt, homes and offices, one ping per ~4 min).
The first 15 files (sorted by name) train, the other 10 are held out and give every score printed
in the model cards. NAB and the Netrics home link are never seen here: they are what
scripts/score.sh measures the whole pipeline on. Anomalies for the classifier and for the
autoencoder's check are synthetic, injected into the last steps of real windows.
"""
import argparse, csv, glob, json, math, os, sys, time
from datetime import datetime, timezone

import autograd.numpy as anp
import numpy as np
import onnx
from autograd import grad
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

W, H, HORIZON, STATS_EVERY, STATS_SPAN = 60, 24, 15, 60, 1440
QUANTILES = np.array([0.1, 0.5, 0.9])
CLASSES = ["normal", "spike", "level_shift", "jitter", "dropout"]
OPSET = 17


# ---------------------------------------------------------------- data

def load_ripe(path):
    ts, xs = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            t = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=timezone.utc).timestamp()
            v = float(row["rtt_ms"])
            ts.append(t)
            xs.append(v if v > 0 else np.nan)  # -3 marks a timeout: missing, not zero
    return np.array(ts), np.array(xs)


def robust_u(x):
    """u = asinh((x - m) / s) with m, s refreshed every STATS_EVERY steps from the last STATS_SPAN
    present values (the statistics known *before* the step). Steps before the first refresh are NaN."""
    n = len(x)
    z = np.full(n, np.nan)
    m = s = None
    for t in range(n):
        if t % STATS_EVERY == 0 and t > 0:
            hist = x[max(0, t - STATS_SPAN):t]
            hist = hist[~np.isnan(hist)]
            if len(hist) >= STATS_EVERY // 2:
                m = np.median(hist)
                s = max(1.4826 * np.median(np.abs(hist - m)), 0.01 * abs(m), 1e-6)
        if m is not None:
            z[t] = (x[t] - m) / s
    return z  # z space; asinh applied after injections


def tod_features(ts):
    a = 2 * np.pi * ((ts % 86400) / 86400.0)
    return np.sin(a), np.cos(a)


class Series:
    def __init__(self, path):
        self.name = os.path.basename(path)
        self.ts, self.x = load_ripe(path)
        self.z = robust_u(self.x)
        self.sin, self.cos = tod_features(self.ts)
        ok = ~np.isnan(self.z)
        # first index where a full window of normalised history exists
        self.start = int(np.argmax(ok)) if ok.any() else len(self.x)


def sample_positions(series, count, rng, need_future):
    out = []
    for _ in range(count * 4):
        s = series[rng.integers(len(series))]
        lo, hi = s.start + W, len(s.x) - (HORIZON if need_future else 0)
        if hi <= lo:
            continue
        out.append((s, int(rng.integers(lo, hi))))
        if len(out) == count:
            break
    return out


def window_z(s, end):
    """z values and presence for steps [end-W, end)."""
    z = s.z[end - W:end].copy()
    present = ~np.isnan(s.x[end - W:end])
    z[~present] = 0.0
    return z, present.astype(np.float64)


def seq_input(z, present, sin, cos):
    u = np.arcsinh(z) * present
    return np.stack([u, present, sin, cos], axis=-1)  # [W, 4]


def flat_input(z, present):
    return np.concatenate([np.arcsinh(z) * present, present])  # [2W]


def inject(z, present, kind, rng):
    """Synthetic anomaly ending at the window's last step (what the detector sees when it fires)."""
    z, present = z.copy(), present.copy()
    sign = 1.0 if rng.random() < 0.8 else -1.0  # latency mostly goes up
    if kind == "spike":
        for p in rng.choice(np.arange(W - 6, W), size=rng.integers(1, 3), replace=False):
            z[p] += sign * rng.uniform(6, 60)
        if rng.random() < 0.5:
            z[W - 1] += sign * rng.uniform(6, 60)
    elif kind == "level_shift":
        start = W - int(rng.integers(4, 20))
        z[start:] += sign * rng.uniform(5, 25)
    elif kind == "jitter":
        start = W - int(rng.integers(8, 20))
        z[start:] += np.abs(rng.normal(0, rng.uniform(4, 12), W - start)) * sign
    elif kind == "dropout":
        start = W - int(rng.integers(3, 15))
        present[start:] = 0.0
        z[start:] = 0.0
    return z, present


# ---------------------------------------------------------------- models (forward passes)

def sigmoid(x):
    return 1.0 / (1.0 + anp.exp(-x))


def lstm_forward(p, X):
    """X [B, W, 4] -> outputs [W, B, H], last hidden [B, H]. Gate rows in ONNX order i, o, f, c."""
    B = X.shape[0]
    h = anp.zeros((B, H))
    c = anp.zeros((B, H))
    outs = []
    for t in range(W):
        g = anp.dot(X[:, t, :], p["Wx"].T) + anp.dot(h, p["Rh"].T) + p["b"]
        i, o, f, cc = sigmoid(g[:, :H]), sigmoid(g[:, H:2 * H]), sigmoid(g[:, 2 * H:3 * H]), anp.tanh(g[:, 3 * H:])
        c = f * c + i * cc
        h = o * anp.tanh(c)
        outs.append(h)
    return anp.stack(outs), h


def forecaster_forward(p, X):
    Y, h = lstm_forward(p, X)                                    # [W,B,H]
    e = anp.dot(anp.tanh(anp.dot(Y, p["Wa"]) + p["ba"]), p["va"])  # [W,B,1]
    e = e - anp.max(e, axis=0, keepdims=True)
    a = anp.exp(e) / anp.sum(anp.exp(e), axis=0, keepdims=True)
    ctx = anp.sum(Y * a, axis=0)                                 # [B,H]
    z = anp.concatenate([ctx, h], axis=1)                        # [B,2H]
    z = anp.maximum(anp.dot(z, p["D1"]) + p["d1"], 0.0)
    q = anp.dot(z, p["D2"]) + p["d2"]                            # [B, HORIZON*3]
    q = anp.reshape(q, (X.shape[0], HORIZON, 3))
    # quantiles kept ordered by construction: q10 = q50 - softplus, q90 = q50 + softplus
    mid = q[:, :, 1:2]
    lo = mid - anp.log1p(anp.exp(q[:, :, 0:1]))
    hi = mid + anp.log1p(anp.exp(q[:, :, 2:3]))
    return anp.concatenate([lo, mid, hi], axis=2)


def mlp_forward(p, x, layers, out_act=None):
    for k in range(layers):
        x = anp.dot(x, p["M%d" % k]) + p["m%d" % k]
        if k < layers - 1:
            x = anp.maximum(x, 0.0)
    if out_act == "softmax":
        x = x - anp.max(x, axis=1, keepdims=True)
        x = anp.exp(x) / anp.sum(anp.exp(x), axis=1, keepdims=True)
    return x


def init(rng, shapes):
    p = {}
    for k, shp in shapes.items():
        fan_in = shp[0] if len(shp) > 1 else 1
        p[k] = rng.normal(0, 1.0 / math.sqrt(fan_in), shp) if len(shp) > 1 else np.zeros(shp)
    return p


def adam(loss_fn, p, batches, steps, lr, log_every, label):
    g_fn = grad(loss_fn)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    t0 = time.time()
    for step in range(1, steps + 1):
        batch = batches(step)
        g = g_fn(p, *batch)
        for k in p:
            gk = np.clip(g[k], -5, 5)
            m[k] = 0.9 * m[k] + 0.1 * gk
            v[k] = 0.999 * v[k] + 0.001 * gk * gk
            mh, vh = m[k] / (1 - 0.9 ** step), v[k] / (1 - 0.999 ** step)
            p[k] = p[k] - lr * (1 - 0.9 * step / steps) * mh / (np.sqrt(vh) + 1e-8)
        if step % log_every == 0 or step == steps:
            print("  %s step %4d  loss %.4f  (%.0f s)" % (label, step, loss_fn(p, *batch), time.time() - t0), flush=True)
    return p


# ---------------------------------------------------------------- training sets

def forecast_batch(series, n, rng):
    X, Y, M = [], [], []
    for s, end in sample_positions(series, n, rng, need_future=True):
        z, pr = window_z(s, end)
        X.append(seq_input(z, pr, s.sin[end - W:end], s.cos[end - W:end]))
        fut = s.z[end:end + HORIZON]
        fm = (~np.isnan(s.x[end:end + HORIZON])) & ~np.isnan(fut)
        Y.append(np.where(fm, np.arcsinh(np.nan_to_num(fut)), 0.0))
        M.append(fm.astype(np.float64))
    return np.array(X), np.array(Y), np.array(M)


def pinball(q, y, mask):
    d = y[:, :, None] - q
    loss = anp.maximum(QUANTILES * d, (QUANTILES - 1.0) * d)
    return anp.sum(loss * mask[:, :, None]) / (anp.sum(mask) * 3 + 1e-9)


def flat_batch(series, n, rng, kinds):
    X, Y, M, K = [], [], [], []
    for s, end in sample_positions(series, n, rng, need_future=False):
        z, pr = window_z(s, end)
        kind = kinds[rng.integers(len(kinds))]
        zi, pi = inject(z, pr, kind, rng) if kind != "normal" else (z, pr)
        X.append(flat_input(zi, pi))
        Y.append(np.arcsinh(zi) * pi)
        M.append(pi)
        K.append(CLASSES.index(kind))
    return np.array(X), np.array(Y), np.array(M), np.array(K)


# ---------------------------------------------------------------- ONNX export

def f32(a):
    return np.asarray(a, dtype=np.float32)


def init_t(name, arr):
    return numpy_helper.from_array(f32(arr), name)


def export_forecaster(p):
    B = 1
    inits = [
        init_t("W", p["Wx"][None]), init_t("R", p["Rh"][None]),
        init_t("B", np.concatenate([p["b"], np.zeros(4 * H)])[None]),
        init_t("h0", np.zeros((1, B, H))), init_t("c0", np.zeros((1, B, H))),
        init_t("Wa", p["Wa"]), init_t("ba", p["ba"]), init_t("va", p["va"]),
        init_t("D1", p["D1"]), init_t("d1", p["d1"]), init_t("D2", p["D2"]), init_t("d2", p["d2"]),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "ax0"),
        numpy_helper.from_array(np.array([B, HORIZON, 3], dtype=np.int64), "qshape"),
    ]
    n = helper.make_node
    nodes = [
        n("Transpose", ["window"], ["x_t"], perm=[1, 0, 2]),                       # [W,B,4]
        # explicit zero initial states: tract 0.23 needs them with a fixed batch
        n("LSTM", ["x_t", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h"], hidden_size=H),
        n("Squeeze", ["Y", "ax1"], ["Ys"]),                                        # [W,B,H]
        n("Squeeze", ["Y_h", "ax0"], ["h"]),                                       # [B,H]
        n("MatMul", ["Ys", "Wa"], ["e1"]), n("Add", ["e1", "ba"], ["e2"]), n("Tanh", ["e2"], ["e3"]),
        n("MatMul", ["e3", "va"], ["e"]),                                          # [W,B,1]
        n("Softmax", ["e"], ["a"], axis=0),
        n("Mul", ["Ys", "a"], ["ya"]), n("ReduceSum", ["ya", "ax0"], ["ctx"], keepdims=0),
        n("Concat", ["ctx", "h"], ["z0"], axis=1),
        n("MatMul", ["z0", "D1"], ["z1"]), n("Add", ["z1", "d1"], ["z2"]), n("Relu", ["z2"], ["z3"]),
        n("MatMul", ["z3", "D2"], ["z4"]), n("Add", ["z4", "d2"], ["z5"]),
        n("Reshape", ["z5", "qshape"], ["q"]),
        n("Split", ["q"], ["q_lo", "q_mid", "q_hi"], axis=2),
        n("Softplus", ["q_lo"], ["sp_lo"]), n("Softplus", ["q_hi"], ["sp_hi"]),
        n("Sub", ["q_mid", "sp_lo"], ["lo"]), n("Add", ["q_mid", "sp_hi"], ["hi"]),
        n("Concat", ["lo", "q_mid", "hi"], ["quantiles"], axis=2),
    ]
    g = helper.make_graph(nodes, "forecaster", [helper.make_tensor_value_info("window", TensorProto.FLOAT, [B, W, 4])],
                          [helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, [B, HORIZON, 3])], inits)
    return g


def export_mlp(p, layers, name, in_dim, out_name, out_dim, softmax):
    n = helper.make_node
    nodes, inits, x = [], [], "flat"
    for k in range(layers):
        inits += [init_t("M%d" % k, p["M%d" % k]), init_t("m%d" % k, p["m%d" % k])]
        nodes += [n("MatMul", [x, "M%d" % k], ["mm%d" % k]), n("Add", ["mm%d" % k, "m%d" % k], ["a%d" % k])]
        x = "a%d" % k
        if k < layers - 1:
            nodes.append(n("Relu", [x], ["r%d" % k]))
            x = "r%d" % k
    if softmax:
        nodes.append(n("Softmax", [x], [out_name], axis=1))
    else:
        nodes.append(n("Identity", [x], [out_name]))
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, in_dim])],
                             [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [1, out_dim])], inits)


def save_model(graph, path, doc, meta):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="wanwatch onnx/train.py")
    m.ir_version = 8
    m.doc_string = doc
    for k, v in meta.items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=str(v)))
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return m


def check_and_vectors(model, fwd, inputs, in_name, out_name, path):
    """Reference-evaluate the ONNX graph against the numpy forward pass and write test vectors the
    Rust test replays through tract."""
    ref = ReferenceEvaluator(model)
    vectors, worst = [], 0.0
    for x in inputs:
        x32 = f32(x)[None]
        want = np.asarray(fwd(x32.astype(np.float64)), dtype=np.float64)
        got = ref.run(None, {in_name: x32})[0]
        worst = max(worst, float(np.max(np.abs(got - want))))
        vectors.append({"input": x32.ravel().tolist(), "input_shape": list(x32.shape),
                        "output": want.ravel().tolist(), "output_shape": list(want.shape)})
    assert worst < 1e-4, "%s: ONNX graph differs from the numpy forward pass by %g" % (path, worst)
    with open(path, "w") as f:
        json.dump({"model": os.path.basename(path).replace(".json", ".onnx"), "input": in_name,
                   "output": out_name, "tolerance": 1e-4, "vectors": vectors}, f)
    return worst


def as32(p):
    return {k: f32(v).astype(np.float64) for k, v in p.items()}


# ---------------------------------------------------------------- scores for the model cards

def auc(neg, pos):
    allv = np.concatenate([neg, pos])
    ranks = allv.argsort().argsort() + 1
    return (ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--datasets", default=os.path.join(here, "..", "..", "shared", "datasets"))
    ap.add_argument("--out", default=here)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="few steps: checks the pipeline, not the models")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    files = sorted(glob.glob(os.path.join(a.datasets, "ripe-rtt", "*.csv")))
    if len(files) < 20:
        sys.exit("need the RIPE RTT traces in %s/ripe-rtt (found %d files)" % (a.datasets, len(files)))
    t0 = time.time()
    # The committed split (scripts/splits.json): train on the tune half only; the test half is
    # what scripts/score.py reports.
    split = json.load(open(os.path.join(here, "..", "scripts", "splits.json")))["ripe-rtt"]
    train = [Series(f) for f in files if os.path.basename(f) in split["tune"]]
    held = [Series(f) for f in files if os.path.basename(f) in split["test"]]
    print("data: %d training traces (%d points), %d held out (%d points), %.0f s" % (
        len(train), sum(len(s.x) for s in train), len(held), sum(len(s.x) for s in held), time.time() - t0))
    steps = 30 if a.quick else 1
    models_dir, vec_dir = os.path.join(a.out, "models"), os.path.join(a.out, "testvectors")
    os.makedirs(models_dir, exist_ok=True)
    os.makedirs(vec_dir, exist_ok=True)
    cards = {}

    # --- forecaster
    p = init(rng, {"Wx": (4 * H, 4), "Rh": (4 * H, H), "b": (4 * H,), "Wa": (H, 16), "ba": (16,), "va": (16, 1),
                   "D1": (2 * H, 32), "d1": (32,), "D2": (32, HORIZON * 3), "d2": (HORIZON * 3,)})
    p["b"][2 * H:3 * H] = 1.0  # forget-gate bias 1: remember by default
    pool = [forecast_batch(train, 256, rng) for _ in range(40)]
    loss = lambda p, X, Y, M: pinball(forecaster_forward(p, X), Y, M)
    print("forecaster: LSTM(%d) + attention, %d steps" % (H, 600 // steps))
    p = adam(loss, p, lambda s: pool[s % len(pool)], 600 // steps, 0.01, 100, "forecaster")
    p = as32(p)
    Xh, Yh, Mh = forecast_batch(held, 2000, np.random.default_rng(a.seed + 1))
    q = forecaster_forward(p, Xh)
    held_loss = float(pinball(q, Yh, Mh))
    # baseline: "tomorrow looks like the last hour": quantiles of the window's own present values
    base_q = np.zeros_like(q)
    for i in range(len(Xh)):
        v = Xh[i, :, 0][Xh[i, :, 1] > 0]
        base_q[i] = np.quantile(v, QUANTILES) if len(v) else 0.0
    base_loss = float(pinball(base_q, Yh, Mh))
    inside = ((Yh >= q[:, :, 0]) & (Yh <= q[:, :, 2]))[Mh > 0].mean()
    m = save_model(export_forecaster(p), os.path.join(models_dir, "forecaster.onnx"),
                   "LSTM(24) with attention: 60-step window of u, present, sin/cos time of day -> q10/q50/q90 of u for 15 steps",
                   {"window": W, "horizon": HORIZON, "quantiles": "0.1,0.5,0.9", "features": "u,present,sin_tod,cos_tod"})
    worst = check_and_vectors(m, lambda x: forecaster_forward(p, x), Xh[:4], "window", "quantiles",
                              os.path.join(vec_dir, "forecaster.json"))
    cards["forecaster"] = dict(held_pinball=held_loss, base_pinball=base_loss, coverage=float(inside), ref_diff=worst)
    print("  held-out pinball %.4f (last-hour quantiles: %.4f), 10-90%% band holds %.1f%% of actuals" % (
        held_loss, base_loss, 100 * inside))

    # --- autoencoder: normal windows only
    pa = init(rng, {"M0": (2 * W, 32), "m0": (32,), "M1": (32, 8), "m1": (8,), "M2": (8, 32), "m2": (32,),
                    "M3": (32, W), "m3": (W,)})
    pool = [flat_batch(train, 256, rng, ["normal"])[:3] for _ in range(40)]
    ae_loss = lambda p, X, Y, M: anp.sum(((mlp_forward(p, X, 4) - Y) ** 2) * M) / (anp.sum(M) + 1e-9)
    print("autoencoder: 120-32-8-32-60, %d steps" % (3000 // steps))
    pa = adam(ae_loss, pa, lambda s: pool[s % len(pool)], 3000 // steps, 0.005, 500, "autoencoder")
    pa = as32(pa)
    hr = np.random.default_rng(a.seed + 2)
    Xn, Yn, Mn, _ = flat_batch(held, 2000, hr, ["normal"])
    Xa, Ya, Ma, Ka = flat_batch(held, 2000, hr, CLASSES[1:])

    def ae_err(X, Y, M):
        r = mlp_forward(pa, X, 4)
        return ((r - Y) ** 2 * M).sum(1) / np.maximum(M.sum(1), 1) + (1 - M).mean(1)  # whole window; src/detect/pipeline.rs scores the newest 5 steps

    en, ea = ae_err(Xn, Yn, Mn), ae_err(Xa, Ya, Ma)
    ae_auc = {CLASSES[k]: float(auc(en, ea[Ka == k])) for k in range(1, len(CLASSES))}
    m = save_model(export_mlp(pa, 4, "autoencoder", 2 * W, "reconstruction", W, False),
                   os.path.join(models_dir, "autoencoder.onnx"),
                   "Dense autoencoder: [u*present, present] of a 60-step window -> reconstruction of u",
                   {"window": W})
    worst_ae = check_and_vectors(m, lambda x: mlp_forward(pa, x, 4), np.concatenate([Xn[:2], Xa[:2]]), "flat",
                                 "reconstruction", os.path.join(vec_dir, "autoencoder.json"))
    cards["autoencoder"] = dict(auc=ae_auc, ref_diff=worst_ae, normal_err_p99=float(np.quantile(en, 0.99)))
    print("  held-out AUC normal vs injected:", {k: round(v, 3) for k, v in ae_auc.items()})

    # --- classifier
    pc = init(rng, {"M0": (2 * W, 32), "m0": (32,), "M1": (32, 16), "m1": (16,), "M2": (16, len(CLASSES)),
                    "m2": (len(CLASSES),)})
    pool = []
    for _ in range(40):
        X, _, _, K = flat_batch(train, 256, rng, CLASSES)
        pool.append((X, np.eye(len(CLASSES))[K]))
    ce = lambda p, X, T: -anp.sum(T * anp.log(mlp_forward(p, X, 3, "softmax") + 1e-9)) / X.shape[0]
    print("classifier: 120-32-16-5, %d steps" % (3000 // steps))
    pc = adam(ce, pc, lambda s: pool[s % len(pool)], 3000 // steps, 0.005, 500, "classifier")
    pc = as32(pc)
    Xc, _, _, Kc = flat_batch(held, 3000, np.random.default_rng(a.seed + 3), CLASSES)
    pred = mlp_forward(pc, Xc, 3, "softmax").argmax(1)
    conf = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for t_, p_ in zip(Kc, pred):
        conf[t_, p_] += 1
    acc = float((pred == Kc).mean())
    m = save_model(export_mlp(pc, 3, "classifier", 2 * W, "probabilities", len(CLASSES), True),
                   os.path.join(models_dir, "classifier.onnx"),
                   "Anomaly kind of a 60-step window: " + ",".join(CLASSES), {"window": W, "classes": ",".join(CLASSES)})
    worst_c = check_and_vectors(m, lambda x: mlp_forward(pc, x, 3, "softmax"), Xc[:4], "flat", "probabilities",
                                os.path.join(vec_dir, "classifier.json"))
    cards["classifier"] = dict(accuracy=acc, confusion=conf.tolist(), ref_diff=worst_c)
    print("  held-out accuracy %.3f" % acc)

    cards["meta"] = dict(seed=a.seed, train=[s.name for s in train], held=[s.name for s in held],
                         seconds=round(time.time() - t0), quick=a.quick)
    with open(os.path.join(models_dir, "scores.json"), "w") as f:
        json.dump(cards, f, indent=1)
    print("wrote %s in %.0f s" % (models_dir, time.time() - t0))


if __name__ == "__main__":
    main()
