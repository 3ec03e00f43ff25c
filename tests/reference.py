"""An independent reference: plain NumPy, written straight from the papers' equations.

The equations and their sources: docs/reference.md.

Nothing here imports gatelab. Each function takes inputs ``x`` (b, t, d) and a parameter dict in
gatelab's naming (``params[part][kernel_x | kernel_h | bias | peephole | bias_h]``), runs the
recurrence one step at a time in float64, and returns ``(outputs (b, t, H), final_state)``.
"""

from __future__ import annotations

import numpy as np


def sigma(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np(params):
    return {
        k: (
            {n: np.asarray(v, np.float64) for n, v in p.items()}
            if isinstance(p, dict)
            else np.asarray(p, np.float64)
        )
        for k, p in params.items()
    }


def _affine(p, x, h=None):
    out = x @ p["kernel_x"] + p["bias"]
    return out if h is None else out + h @ p["kernel_h"]


def greff_lstm(x, params, variant="vanilla", trace=None):
    """Greff et al. (2017), docs/reference.md sections 2-3.

    ``variant`` in vanilla, NIG, NFG, NOG, NIAF, NOAF, NP, CIFG, FGR, or ``lstm`` (= NP).
    Vanilla::

        z_t = g(W_z x_t + R_z y_{t-1} + b_z)
        i_t = sigma(W_i x_t + R_i y_{t-1} + p_i . c_{t-1} + b_i)
        f_t = sigma(W_f x_t + R_f y_{t-1} + p_f . c_{t-1} + b_f)
        c_t = z_t . i_t + c_{t-1} . f_t
        o_t = sigma(W_o x_t + R_o y_{t-1} + p_o . c_t + b_o)
        y_t = h(c_t) . o_t

    FGR adds ``R_ji j_{t-1}`` for every pair of gates (j the source, i the target), stored as one
    (3H, 3H) matrix whose block (j, i) maps gate j's previous activation into gate i, with the
    gates ordered input, forget, output. With a dict ``trace``, every step's gate values and
    cell state are appended to ``trace[name]`` (a removed gate as the constant 1).
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    hidden = p["candidate"]["bias"].shape[0]
    peep = variant not in ("NP", "lstm")
    g = (lambda v: v) if variant == "NIAF" else np.tanh
    act = (lambda v: v) if variant == "NOAF" else np.tanh
    c = np.zeros((b, hidden))
    y = np.zeros((b, hidden))
    prev = {k: np.zeros((b, hidden)) for k in ("input", "forget", "output")}
    outputs = []

    def fgr(target):
        if variant != "FGR":
            return 0.0
        kernel = p["gate_recurrence"]["kernel"]
        order = ["input", "forget", "output"]
        col = order.index(target)
        return sum(
            prev[src] @ kernel[r * hidden : (r + 1) * hidden, col * hidden : (col + 1) * hidden]
            for r, src in enumerate(order)
        )

    for step in range(t):
        xt = x[:, step]
        z = g(_affine(p["candidate"], xt, y))
        i = f = o = None
        if variant != "NIG":
            s = _affine(p["input"], xt, y) + fgr("input")
            i = sigma(s + (p["input"]["peephole"] * c if peep else 0.0))
        if variant == "CIFG":
            f = 1.0 - i
        elif variant != "NFG":
            s = _affine(p["forget"], xt, y) + fgr("forget")
            f = sigma(s + (p["forget"]["peephole"] * c if peep else 0.0))
        c = z * (1.0 if i is None else i) + c * (1.0 if f is None else f)
        if variant != "NOG":
            s = _affine(p["output"], xt, y) + fgr("output")
            o = sigma(s + (p["output"]["peephole"] * c if peep else 0.0))
        y = act(c) * (1.0 if o is None else o)
        prev = {"input": i, "forget": f, "output": o}
        outputs.append(y)
        if trace is not None:
            for name, value in {**prev, "cell": c}.items():
                trace.setdefault(name, []).append(np.ones_like(c) if value is None else value)
    return np.stack(outputs, 1), (c, y)


def gru(x, params, reset_after=True):
    """GRU (Cho et al. 2014) with Chung et al.'s interpolation, docs/reference.md section 4::

    r = sigma(W_r x + U_r h + b_r);   u = sigma(W_u x + U_u h + b_u)
    reset after:  h~ = tanh(W x + b + r . (U h + b_h))       (PyTorch, cuDNN, Flax)
    reset before: h~ = tanh(W x + U (r . h) + b)             (Keras v3, TF GRUBlockCell)
    h_t = (1 - u) . h_{t-1} + u . h~
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    outputs = []
    for step in range(t):
        xt = x[:, step]
        r = sigma(_affine(p["reset"], xt, h))
        u = sigma(_affine(p["update"], xt, h))
        cand = p["candidate"]
        if reset_after:
            h_tilde = np.tanh(
                xt @ cand["kernel_x"] + cand["bias"] + r * (h @ cand["kernel_h"] + cand["bias_h"])
            )
        else:
            h_tilde = np.tanh(xt @ cand["kernel_x"] + (r * h) @ cand["kernel_h"] + cand["bias"])
        h = (1.0 - u) * h + u * h_tilde
        outputs.append(h)
    return np.stack(outputs, 1), h


def mgu(x, params):
    """MGU (Zhou et al. 2016), docs/reference.md 4.2, its one gate stored as ``update``::

    f_t = sigma(W_f x_t + U_f h_{t-1} + b_f)
    h^_t = tanh(W_h x_t + U_h (f_t . h_{t-1}) + b_h)
    h_t = (1 - f_t) . h_{t-1} + f_t . h^_t
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    outputs = []
    for step in range(t):
        xt = x[:, step]
        f = sigma(_affine(p["update"], xt, h))
        cand = p["candidate"]
        h_hat = np.tanh(xt @ cand["kernel_x"] + (f * h) @ cand["kernel_h"] + cand["bias"])
        h = (1.0 - f) * h + f * h_hat
        outputs.append(h)
    return np.stack(outputs, 1), h


def janet(x, params, beta=1.0):
    """JANET (van der Westhuizen & Lasenby 2018), docs/reference.md section 4::

    s_t = U_f h_{t-1} + W_f x_t + b_f
    c~_t = tanh(U_c h_{t-1} + W_c x_t + b_c)
    c_t = sigma(s_t) . c_{t-1} + (1 - sigma(s_t - beta)) . c~_t
    h_t = c_t
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    c = np.zeros((b, p["candidate"]["bias"].shape[0]))
    outputs = []
    for step in range(t):
        xt = x[:, step]
        s = _affine(p["forget"], xt, c)
        c_tilde = np.tanh(_affine(p["candidate"], xt, c))
        c = sigma(s) * c + (1.0 - sigma(s - beta)) * c_tilde
        outputs.append(c)
    return np.stack(outputs, 1), (c, c)


def ugrnn(x, params, forget_bias=1.0):
    """UGRNN (Collins et al. 2017) as TF contrib computes it, docs/reference.md section 4::

        [g~, c~] = W [x; h] + b;  c = tanh(c~);  g = sigma(g~ + forget_bias)
        h_t = g . h_{t-1} + (1 - g) . c

    gatelab stores the gate as ``update`` u = 1 - g, with forget_bias folded into the bias's
    initial value; here the TF form's own parameters are derived from gatelab's:
    ``W_g = -W_u`` and ``b_g = -b_u - forget_bias``.
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    w_g = np.concatenate([-p["update"]["kernel_x"], -p["update"]["kernel_h"]], 0)
    b_g = -p["update"]["bias"] - forget_bias
    w_c = np.concatenate([p["candidate"]["kernel_x"], p["candidate"]["kernel_h"]], 0)
    outputs = []
    for step in range(t):
        xh = np.concatenate([x[:, step], h], -1)
        g = sigma(xh @ w_g + b_g + forget_bias)
        c = np.tanh(xh @ w_c + p["candidate"]["bias"])
        h = g * h + (1.0 - g) * c
        outputs.append(h)
    return np.stack(outputs, 1), h


def _g(v):
    """minGRU's positive candidate activation: v + 0.5 for v >= 0, sigma(v) below."""
    return np.where(v >= 0, v + 0.5, sigma(v))


def mingru(x, params):
    """minGRU (Feng et al. 2024), docs/reference.md section 5, sequential form with ``g``::

    z_t = sigma(Lin(x_t));  h~_t = g(Lin(x_t));  h_t = (1 - z_t) . h_{t-1} + z_t . h~_t
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    outputs = []
    for step in range(t):
        z = sigma(_affine(p["update"], x[:, step]))
        h = (1.0 - z) * h + z * _g(_affine(p["candidate"], x[:, step]))
        outputs.append(h)
    return np.stack(outputs, 1), h


def minlstm(x, params):
    """minLSTM (Feng et al. 2024), docs/reference.md section 5::

    f_t = sigma(Lin(x_t)), i_t = sigma(Lin(x_t)), h~_t = g(Lin(x_t))
    f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t);  h_t = f'_t . h_{t-1} + i'_t . h~_t
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    outputs = []
    for step in range(t):
        f = sigma(_affine(p["forget"], x[:, step]))
        i = sigma(_affine(p["input"], x[:, step]))
        h = f / (f + i) * h + i / (f + i) * _g(_affine(p["candidate"], x[:, step]))
        outputs.append(h)
    return np.stack(outputs, 1), h


def mut(x, params, which):
    """Jozefowicz et al.'s (2015) MUT1-3, docs/reference.md section 4 (the paper's ``z`` is the
    fraction written, gatelab's ``update``)::

    MUT1: z = sigma(W_xz x + b_z);                 r = sigma(W_xr x + W_hr h + b_r)
          h' = tanh(W_hh (r . h) + tanh(x) + b_h) . z + h . (1 - z)
    MUT2: z = sigma(W_xz x + W_hz h + b_z);        r = sigma(x + W_hr h + b_r)
          h' = tanh(W_hh (r . h) + W_xh x + b_h) . z + h . (1 - z)
    MUT3: z = sigma(W_xz x + W_hz tanh(h) + b_z);  r = sigma(W_xr x + W_hr h + b_r)
          h' = tanh(W_hh (r . h) + W_xh x + b_h) . z + h . (1 - z)
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    z_p, r_p, c_p = p["update"], p["reset"], p["candidate"]
    outputs = []
    for step in range(t):
        xt = x[:, step]
        if which == 1:
            z = sigma(xt @ z_p["kernel_x"] + z_p["bias"])
        elif which == 3:
            z = sigma(xt @ z_p["kernel_x"] + np.tanh(h) @ z_p["kernel_h"] + z_p["bias"])
        else:
            z = sigma(_affine(z_p, xt, h))
        if which == 2:
            r = sigma(xt + h @ r_p["kernel_h"] + r_p["bias"])
        else:
            r = sigma(_affine(r_p, xt, h))
        x_term = np.tanh(xt) if which == 1 else xt @ c_p["kernel_x"]
        h = np.tanh((r * h) @ c_p["kernel_h"] + x_term + c_p["bias"]) * z + h * (1.0 - z)
        outputs.append(h)
    return np.stack(outputs, 1), h


def _per_head(h, kernel):
    """h (b, H) times the block-diagonal (NH, DH, DH) kernel."""
    heads, size, _ = kernel.shape
    blocks = h.reshape(h.shape[0], heads, size)
    return np.einsum("bni,nio->bno", blocks, kernel).reshape(h.shape[0], -1)


def slstm(x, params, input="exponential", forget="sigmoid", output=True, normaliser=True,
          stabilised=True, trace=None):  # fmt: skip
    """sLSTM (Beck et al. 2024), docs/reference.md section 6, the authors' pointwise step::

    raw = W x_t + R h_{t-1} + b  (R block-diagonal per head, absent without mixing)
    log i = i~ | log sigma(i~) | 0;   log f = log sigma(f~) | f~ | 0
    m_t = log i if n_{t-1} == 0 else max(log i, log f + m_{t-1})
    i' = min(exp(log i - m_t), 1);    f' = min(exp(log f + m_{t-1} - m_t), 1)
    c_t = f' c + i' tanh(z~);  n_t = f' n + i';  h_t = sigma(o~) c_t / n_t

    ``stabilised=False`` runs the same without m: ``i = exp(log i)``, ``f = exp(log f)``;
    ``normaliser=False``: ``c_t = f c + i tanh(z~)``, ``h_t = o tanh(c_t)``. Returns (c, n).
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    hidden = p["candidate"]["bias"].shape[0]
    c, n, m, h = (np.zeros((b, hidden)) for _ in range(4))
    outputs = []

    def raw(part, xt, h):
        q = p[part]
        s = xt @ q["kernel_x"] + q["bias"]
        return s + _per_head(h, q["kernel_h"]) if "kernel_h" in q else s

    def log_gate(kind, part, xt, h):
        if kind == "open":
            return np.zeros((b, hidden))
        s = raw(part, xt, h)
        return s if kind == "exponential" else -np.logaddexp(0.0, -s)

    for step in range(t):
        xt = x[:, step]
        log_i = log_gate(input, "input", xt, h)
        log_f = log_gate(forget, "forget", xt, h)
        z = np.tanh(raw("candidate", xt, h))
        o = sigma(raw("output", xt, h)) if output else 1.0
        if normaliser and stabilised:
            m_new = np.where(n == 0.0, log_i, np.maximum(log_i, log_f + m))
            i = np.minimum(np.exp(log_i - m_new), 1.0)
            f = np.minimum(np.exp(log_f + m - m_new), 1.0)
            m = m_new
        else:
            i, f = np.exp(log_i), np.exp(log_f)
        c = f * c + i * z
        if normaliser:
            n = f * n + i
            h = o * c / n
        else:
            h = o * np.tanh(c)
        if trace is not None:
            for name, value in {"input": i, "forget": f, "normaliser": n}.items():
                trace.setdefault(name, []).append(value)
        outputs.append(h)
    return np.stack(outputs, 1), (c, n)


def rglru(x, params, recurrence=True, input=True, normalise=True, c=8.0, projection=True):
    """RG-LRU (De et al. 2024), docs/reference.md section 6, the authors' cell::

    u_t = W_u x_t + b_u (projection) or x_t
    r_t = sigma(W_a x_t + b_a);  i_t = sigma(W_x x_t + b_x)
    log a_t = -c r_t softplus(Lambda);  h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t u_t)
    """
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    rate = np.logaddexp(0.0, p["decay"]["lambda"])  # softplus
    h = np.zeros((b, rate.shape[0]))
    outputs = []
    for step in range(t):
        xt = x[:, step]
        u = _affine(p["candidate"], xt) if projection else xt
        r = sigma(_affine(p["recurrence"], xt)) if recurrence else 1.0
        i = sigma(_affine(p["input"], xt)) if input else 1.0
        a = np.exp(-c * r * rate)
        scale = np.sqrt(1.0 - a**2) if normalise else 1.0
        h = a * h + scale * (i * u)
        outputs.append(h)
    return np.stack(outputs, 1), h


def indrnn(x, params):
    """IndRNN (Li et al. 2018), docs/reference.md section 6: h_t = relu(W x_t + u . h_{t-1} + b),
    u = 0 when the recurrence is removed."""
    p = _np(params)
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    u = p["recurrence"]["u"] if "recurrence" in p else 0.0
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    outputs = []
    for step in range(t):
        h = np.maximum(_affine(p["candidate"], x[:, step]) + u * h, 0.0)
        outputs.append(h)
    return np.stack(outputs, 1), h


# Every named variant of gatelab, by the reference function that must reproduce it.
REFERENCES = {
    "lstm": lambda x, p: greff_lstm(x, p, "lstm"),
    "vanilla": lambda x, p: greff_lstm(x, p, "vanilla"),
    **{
        name: (lambda n: lambda x, p: greff_lstm(x, p, n))(name)
        for name in ("NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR")
    },
    "gru": lambda x, p: gru(x, p, reset_after=True),
    "gru_reset_before": lambda x, p: gru(x, p, reset_after=False),
    "mgu": mgu,
    "janet": janet,
    "ugrnn": ugrnn,
    "mingru": mingru,
    "minlstm": minlstm,
    "mut1": lambda x, p: mut(x, p, 1),
    "mut2": lambda x, p: mut(x, p, 2),
    "mut3": lambda x, p: mut(x, p, 3),
    "slstm": slstm,
    "slstm_sigmoid_input": lambda x, p: slstm(x, p, input="sigmoid"),
    "slstm_no_input_gate": lambda x, p: slstm(x, p, input="open"),
    "slstm_exp_forget": lambda x, p: slstm(x, p, forget="exponential"),
    "slstm_no_forget_gate": lambda x, p: slstm(x, p, forget="open"),
    "slstm_no_output_gate": lambda x, p: slstm(x, p, output=False),
    "slstm_no_normaliser": lambda x, p: slstm(x, p, input="sigmoid", normaliser=False),
    "slstm_no_mixing": slstm,  # the reference reads the absent kernels off the parameters
    "rglru": rglru,
    "rglru_no_recurrence_gate": lambda x, p: rglru(x, p, recurrence=False),
    "rglru_no_input_gate": lambda x, p: rglru(x, p, input=False),
    "rglru_no_normalisation": lambda x, p: rglru(x, p, normalise=False),
    "rglru_c1": lambda x, p: rglru(x, p, c=1.0),
    "indrnn": indrnn,
    "indrnn_no_recurrence": indrnn,
}


# --------------------------------------------------------------------------------------------------
# Regularisers and normalisation (docs/reference.md, "Regularisers and normalisation").
# --------------------------------------------------------------------------------------------------


def layer_norm(s, scale, shift, eps=1e-5):
    """Ba et al. (2016): ``scale * (s - mean) / sqrt(var + eps) + shift`` over the last axis."""
    mean = s.mean(-1, keepdims=True)
    var = ((s - mean) ** 2).mean(-1, keepdims=True)
    return (s - mean) / np.sqrt(var + eps) * scale + shift


def _normed(terms, parts, groups, p, name):
    """Layer norm of the terms of ``parts`` with statistics over each group of parts."""
    out = {}
    for group in groups:
        group = [g for g in group if g in parts]
        if not group:
            continue
        joint = np.concatenate([terms[g] for g in group], -1)
        scale = np.concatenate([p[g][f"ln_{name}_scale"] for g in group])
        shift = np.concatenate([p[g][f"ln_{name}_shift"] for g in group])
        normed = layer_norm(joint, scale, shift)
        for k, g in enumerate(group):
            out[g] = normed[:, k * terms[g].shape[-1] : (k + 1) * terms[g].shape[-1]]
    return out


def _zone(new, old, keep, rate):
    """Zoneout (Krueger et al. 2016): keep the old value where ``keep`` (training), else in
    expectation with the rate (evaluation)."""
    if keep is not None:
        return np.where(keep, old, new)
    if rate:
        return rate * old + (1.0 - rate) * new
    return new


def regularised_lstm(
    x,
    params,
    masks=None,
    zoneout=(0.0, 0.0),
    layer_norm_terms=(),
    stats="joint",
    gates=("input", "forget", "output"),
    peepholes=False,
):
    """An LSTM with variational dropout, zoneout, weight drop, layer norm and LSTMP's projection.

    ``masks`` (training; ``None`` at evaluation) holds per part ``input`` (b, d) and
    ``recurrent`` (b, r) inverted masks, per part ``weight`` masks of the recurrent kernels, and
    keep-old booleans ``zone_cell``, ``zone_hidden`` (t, b, .). ``gates`` lists the learned
    gates (the others are removed: constant 1). The authors' layer norm::

        a = LN(x W + b) + LN(h U) + b;   c' = f c + i tanh(a_z);   h' = o tanh(LN(c'))
        LSTMP: h' = (o tanh(c')) W_hr
    """
    p = _np(params)
    masks = masks or {}
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    hidden = p["candidate"]["bias"].shape[0]
    proj = p.get("projection", {}).get("kernel")
    c = np.zeros((b, hidden))
    h = np.zeros((b, hidden if proj is None else proj.shape[1]))
    parts = [*gates, "candidate"]
    groups = [parts] if stats == "joint" else [[g] for g in parts]
    outputs = []
    for step in range(t):
        xt = x[:, step]
        ax, ah = {}, {}
        for part in parts:
            q = p[part]
            xm = xt * np.asarray(masks["input"][part]) if "input" in masks else xt
            hm = h * np.asarray(masks["recurrent"][part]) if "recurrent" in masks else h
            u = (
                q["kernel_h"] * np.asarray(masks["weight"][part])
                if "weight" in masks
                else q["kernel_h"]
            )
            ax[part] = xm @ q["kernel_x"] + q["bias"]
            ah[part] = hm @ u
        if "input" in layer_norm_terms:
            ax = {k: v + p[k]["bias"] for k, v in _normed(ax, parts, groups, p, "input").items()}
        if "recurrent" in layer_norm_terms:
            ah = _normed(ah, parts, groups, p, "recurrent")
        s = {k: ax[k] + ah[k] for k in parts}
        peep = lambda g, state: p[g]["peephole"] * state if peepholes else 0.0  # noqa: E731
        i = sigma(s["input"] + peep("input", c)) if "input" in gates else 1.0
        f = sigma(s["forget"] + peep("forget", c)) if "forget" in gates else 1.0
        new_c = f * c + i * np.tanh(s["candidate"])
        o = sigma(s["output"] + peep("output", new_c)) if "output" in gates else 1.0
        shown = new_c
        if "cell" in layer_norm_terms:
            shown = layer_norm(new_c, p["cell_norm"]["scale"], p["cell_norm"]["shift"])
        new_h = o * np.tanh(shown)
        if proj is not None:
            new_h = new_h @ proj
        keep_c = masks.get("zone_cell")
        keep_h = masks.get("zone_hidden")
        c = _zone(new_c, c, None if keep_c is None else np.asarray(keep_c)[step], zoneout[0])
        h = _zone(new_h, h, None if keep_h is None else np.asarray(keep_h)[step], zoneout[1])
        outputs.append(h)
    return np.stack(outputs, 1), (c, h)


def regularised_gru(
    x, params, masks=None, zoneout=0.0, layer_norm_terms=(), stats="joint", reset_after=True
):
    """A GRU (``update`` the fraction written) with variational dropout, zoneout, weight drop and
    the authors' layer norm (``lngru_layer``: the gates' terms normalised together, the
    candidate's alone)::

        u, r = sigma(LN(x W + b)[gates] + LN(h U)[gates])
        h~ = tanh(LN(x W_c + b_c) + r * (LN(h U_c) + b_ch))      reset after
        h~ = tanh(LN(x W_c + b_c) + LN((r * h) U_c))             reset before
        h' = (1 - u) h + u h~
    """
    p = _np(params)
    masks = masks or {}
    x = np.asarray(x, np.float64)
    b, t, _ = x.shape
    h = np.zeros((b, p["candidate"]["bias"].shape[0]))
    parts = ["update", "reset", "candidate"]
    groups = [["update", "reset"], ["candidate"]] if stats == "joint" else [[g] for g in parts]
    outputs = []
    for step in range(t):
        xt = x[:, step]
        ax, ah, seen, kernels = {}, {}, {}, {}
        for part in parts:
            q = p[part]
            xm = xt * np.asarray(masks["input"][part]) if "input" in masks else xt
            seen[part] = h * np.asarray(masks["recurrent"][part]) if "recurrent" in masks else h
            kernels[part] = q["kernel_h"] * (
                np.asarray(masks["weight"][part]) if "weight" in masks else 1.0
            )
            ax[part] = xm @ q["kernel_x"] + q["bias"]
            if part != "candidate" or reset_after:
                ah[part] = seen[part] @ kernels[part]
        if "input" in layer_norm_terms:
            ax = _normed(ax, parts, groups, p, "input")
        if "recurrent" in layer_norm_terms:
            ah = _normed(ah, list(ah), groups, p, "recurrent")
        u = sigma(ax["update"] + ah["update"])
        r = sigma(ax["reset"] + ah["reset"])
        if reset_after:
            h_tilde = np.tanh(ax["candidate"] + r * (ah["candidate"] + p["candidate"]["bias_h"]))
        else:
            late = (r * seen["candidate"]) @ kernels["candidate"]
            if "recurrent" in layer_norm_terms:
                q = p["candidate"]
                late = layer_norm(late, q["ln_recurrent_scale"], q["ln_recurrent_shift"])
            h_tilde = np.tanh(ax["candidate"] + late)
        new_h = (1.0 - u) * h + u * h_tilde
        keep = masks.get("zone_hidden")
        h = _zone(new_h, h, None if keep is None else np.asarray(keep)[step], zoneout)
        outputs.append(h)
    return np.stack(outputs, 1), h
