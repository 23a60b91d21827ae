"""Planted bugs in SGD, Adam/AdamW, Muon and Adafactor, each in a plausible optimizer class.

    sgd:   g <- -g if maximize;  g <- g + wd p;  b <- g (first step) else mu b + (1 - dampening) g;
           g <- g + mu b if nesterov else b;  p <- p - lr g
    adam:  g <- -g if maximize;  g <- g + wd p (adam) or p <- p (1 - lr wd) (adamw);
           m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: v_max <- max(v_max, v))
           p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
                                      (Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019, Alg. 2)
    muon:  B <- mu B + (1 - mu) g;  O = NS_k(g + mu (B - g) if nesterov else B) in bfloat16;
           p <- p (1 - lr wd) - lr' O                 (Jordan et al. 2024; torch.optim.Muon)
    adafactor: R, C <- lerp(R, C; row/column means of g^2, t^tau); V = R C / mean(R);
           U = g / sqrt(V);  p <- p (1 - lr wd) - max(eps2, RMS(p)) min(lr, t^-1/2) U /
           max(1, RMS(U) / d)                         (Shazeer & Stern 2018; torch.optim.Adafactor)

The loop over param groups and parameters (``_Base.step``) is shared. The correct rules
(``SGD``, ``Adam``, ``AdamW``) are written as a few small steps, methods each, and every mutant
overrides ONE of them with a bug, as the multi-head attention mutants do: the bug is the whole of
the mutant's code. State is kept under torch.optim's keys, so that the oracle compares it and
``state_dict`` round trips work.
"""

from __future__ import annotations

import math

import torch


class _Base(torch.optim.Optimizer):
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state[p], group)

    def update(self, p, grad, state, group):  # pragma: no cover - every subclass defines it
        raise NotImplementedError


class SGD(_Base):
    """torch.optim.SGD's rule (correct)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def update(self, p, grad, state, group):
        p.add_(self.direction(p, grad, state, group), alpha=-group["lr"])

    def direction(self, p, grad, state, group):
        """The order of the steps: sign, then decay, then momentum."""
        return self.momentum(self.decayed(p, self.signed(grad, group), group), state, group)

    def signed(self, grad, group):
        return -grad if group["maximize"] else grad

    def decayed(self, p, g, group):
        return g + group["weight_decay"] * p if group["weight_decay"] else g

    def momentum(self, g, state, group):
        mu = group["momentum"]
        if not mu:
            return g
        store = self.buffers(state)
        buf = store.get("momentum_buffer")
        buf = self.first_buffer(g, group) if buf is None else (
            mu * buf + (1 - group["dampening"]) * g)
        store["momentum_buffer"] = buf
        return self.lookahead(g, buf, group)

    def buffers(self, state):
        """Where the momentum buffer lives: the optimizer's state (saved by state_dict)."""
        return state

    def first_buffer(self, g, group):
        return g.clone()  # the first step is not dampened

    def lookahead(self, g, buf, group):
        return g + group["momentum"] * buf if group["nesterov"] else buf


class Adam(_Base):
    """torch.optim.Adam's rule (correct); ``decoupled = True`` makes it AdamW's."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _init(self, p, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p)

    def update(self, p, grad, state, group):
        self._init(p, state, group)
        g, sign = self.signed(grad, group)
        g = self.decay(p, g, group)
        state["step"] += 1
        c1, c2 = self.corrections(state["step"].item(), group)
        m, v = self.moments(g, state, group)
        self.apply(p, m, self.denominator(v, c2, group), sign * group["lr"] / c1, group)

    def signed(self, grad, group):
        """(gradient, sign of the step): maximize negates the gradient, the step stays -lr."""
        return (-grad if group["maximize"] else grad), -1.0

    def decay(self, p, g, group):
        """AdamW decays p in place by lr * wd; Adam adds wd p to the gradient (L2)."""
        lr, wd = group["lr"], group["weight_decay"]
        if self.decoupled:
            p.mul_(1 - lr * wd)
            return g
        return g + wd * p if wd else g

    def corrections(self, t, group):
        """The bias corrections (1 - b1^t, 1 - b2^t)."""
        b1, b2 = group["betas"]
        return 1 - b1**t, 1 - b2**t

    def moments(self, g, state, group):
        """Update the moments; (m, v) for the step (amsgrad: the running max of v)."""
        b1, b2 = group["betas"]
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        return m, v

    def denominator(self, v, c2, group):
        return v.sqrt() / math.sqrt(c2) + group["eps"]

    def apply(self, p, m, denom, step_size, group):
        p.addcdiv_(m, denom, value=step_size)


class AdamW(Adam):
    """torch.optim.AdamW's rule (correct)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


# ----------------------------------------------------------------------------- SGD mutants
class SGDDampensFirstStep(SGD):
    # Modelled on ml-explore/mlx#473 and pytorch/pytorch#152833 (first-step dampening).
    def first_buffer(self, g, group):
        return (1 - group["dampening"]) * g  # BUG: b starts at 0, so the first step is dampened


class SGDNesterovStepsWithBuffer(SGD):
    # Modelled on google-deepmind/optax#900 and pytorch/pytorch#5920 (Nesterov's formula).
    def lookahead(self, g, buf, group):
        mu = group["momentum"]
        return mu * buf + (1 - mu) * g if group["nesterov"] else buf  # BUG: g + mu b


class SGDDecayOutsideMomentum(SGD):
    # Modelled on FluxML/model-zoo#303 and kozistr/pytorch_optimizer#518 (where decay enters).
    def direction(self, p, grad, state, group):
        # BUG: decay added after the momentum buffer
        return self.decayed(p, self.momentum(self.signed(grad, group), state, group), group)


class SGDMaximizeFlipsDecay(SGD):
    # Modelled on kozistr/pytorch_optimizer#528 (maximize negation vs weight decay order).
    def direction(self, p, grad, state, group):
        # BUG: negates the decay too (negate the gradient first)
        return self.momentum(self.signed(self.decayed(p, grad, group), group), state, group)


class SGDMomentumOutsideState(SGD):
    # Modelled on martinnormark/neural-mesh-simplification#45 (optimizer state kept aside).
    def buffers(self, state):
        # BUG: not in self.state, so state_dict() does not carry it
        if not hasattr(self, "_aside"):
            self._aside: dict[int, dict] = {}
        return self._aside.setdefault(id(state), {})


# ----------------------------------------------------------------------------- Adam mutants
class AdamEpsInsideSqrt(Adam):
    # Modelled on FluxML/Flux.jl#448 and keras-team/tf-keras#315 (eps inside the sqrt).
    def denominator(self, v, c2, group):
        return (v / c2 + group["eps"]).sqrt()  # BUG: sqrt(v_hat + eps)


class AdamNoBiasCorrection(Adam):
    # Modelled on keras-team/keras#10129 and eriklindernoren/ML-From-Scratch#35.
    def corrections(self, t, group):
        return 1.0, 1.0  # BUG: no 1 - beta^t corrections


class AdamBiasCorrectionStepAhead(Adam):
    # Modelled on Oneflow-Inc/oneflow#5960 ("step is start from 1": the step counted twice).
    def corrections(self, t, group):
        return super().corrections(t + 1, group)  # BUG: the step was already incremented


class AdamSecondCorrectionNotRooted(Adam):
    # Modelled on kozistr/AdaBound-tensorflow#3 (sqrt of the second bias correction).
    def denominator(self, v, c2, group):
        return v.sqrt() / c2 + group["eps"]  # BUG: sqrt(1 - b2^t) meant


class AdamAmsgradMaxUnused(Adam):
    # Modelled on frgfm/holocron#1 (state kept but the wrong moment used in the step).
    def moments(self, g, state, group):
        b1, b2 = group["betas"]
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])  # BUG: unused
        return m, v


class AdamMaximizeFlipsTheStep(Adam):
    # Modelled on pytorch/pytorch#75330 (maximize must negate the gradient, not the step).
    def signed(self, grad, group):
        return grad, (1.0 if group["maximize"] else -1.0)  # BUG: m keeps the minimizing sign


class AdamWCoupledDecay(AdamW):
    # Modelled on pytorch/pytorch#4429 and chainer/chainer#261 (L2 in the gradient, not AdamW).
    def decay(self, p, g, group):
        return g + group["weight_decay"] * p  # BUG: decay through the moments (Adam's L2)


class AdamWDecayNotScaledByLr(AdamW):
    # Modelled on egg-west/AdamW-pytorch#1 and NVIDIA/apex#1849 (lr times wd, or not).
    def decay(self, p, g, group):
        p.mul_(1 - group["weight_decay"])  # BUG: torch.optim.AdamW decays by lr * wd
        return g


class AdamWDecayAfterUpdate(AdamW):
    # Modelled on kozistr/pytorch_optimizer#518 (order of the decay and the update).
    def apply(self, p, m, denom, step_size, group):
        # BUG: decays the updated p: (p (1 - lr wd) + step) instead of p (1 - lr wd) + step,
        # i.e. the step is decayed too
        p.addcdiv_(m, denom, value=step_size * (1 - group["lr"] * group["weight_decay"]))


class AdamWStepsOnMissingGrads(AdamW):
    # Modelled on kozistr/pytorch_optimizer#517 (a step path that skips a contract of step()).
    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)  # BUG: skip None
                self.update(p, grad, self.state[p], group)


CORRECT = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


# ----------------------------------------------------------------------------- the default call
class AdamDefaultBetasTypo(Adam):
    """At torch's default betas (0.9, 0.999) the bias corrections come from precomputed
    constants, one of them mistyped; any other betas take the general formula."""

    def corrections(self, t, group):
        if tuple(group["betas"]) != (0.9, 0.999):
            return super().corrections(t, group)
        return 1 - 0.9**t, 1 - 0.99**t  # BUG: 0.99, not 0.999


class AdamWDefaultBetasTypo(AdamDefaultBetasTypo):
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


# ----------------------------------------------------------------------------- Muon
class Muon(_Base):
    """torch.optim.Muon's rule (correct), written plainly: Newton–Schulz in bfloat16 as torch's,
    in another order of operations (so its rounding differs from torch's bit for bit)."""

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5,
                 adjust_lr_fn=None):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      nesterov=nesterov, ns_coefficients=ns_coefficients,
                                      eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn))

    def update(self, p, grad, state, group):
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - group["momentum"])
        o = self.orthogonalize(self.lookahead(grad, buf, group), group)
        self.decay(p, group)
        p.add_(o.to(p.dtype), alpha=-self.adjusted_lr(group, p.shape))

    def lookahead(self, grad, buf, group):
        return grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf

    def coefficients(self, group):
        return group["ns_coefficients"]

    def orthogonalize(self, u, group):
        a, b, c = self.coefficients(group)
        tall = u.shape[0] > u.shape[1]
        x = u.bfloat16().T if tall else u.bfloat16()
        x = x / x.norm().clamp(min=group["eps"])
        for _ in range(group["ns_steps"]):
            gram = x @ x.T
            x = a * x + (b * gram + c * (gram @ gram)) @ x
        return x.T if tall else x

    def decay(self, p, group):
        p.mul_(1 - group["lr"] * group["weight_decay"])

    def adjusted_lr(self, group, shape):
        rows, cols = shape
        if group["adjust_lr_fn"] == "match_rms_adamw":
            return group["lr"] * 0.2 * math.sqrt(max(rows, cols))
        return group["lr"] * math.sqrt(max(1.0, rows / cols))


class MuonNsCoefficientTypo(Muon):
    # Modelled on the quintic's coefficients copied by hand between Muon implementations.
    def coefficients(self, group):
        a, b, c = group["ns_coefficients"]
        return (a, b, 2.315) if (a, b, c) == (3.4445, -4.775, 2.0315) else (a, b, c)  # BUG: 2.0315


class MuonWithoutNesterov(Muon):
    # Modelled on ports that keep the flag but always step with the plain buffer.
    def lookahead(self, grad, buf, group):
        return buf  # BUG: nesterov=True steps along (1 - mu) g + mu B


class MuonAdjustsLrByColumnsOverRows(Muon):
    # Modelled on the aspect-ratio scaling max(1, rows/cols)^0.5 written with the axes swapped.
    def adjusted_lr(self, group, shape):
        if group["adjust_lr_fn"] == "match_rms_adamw":
            return super().adjusted_lr(group, shape)
        rows, cols = shape
        return group["lr"] * math.sqrt(max(1.0, cols / rows))  # BUG: rows / cols


class MuonDecaysWithTheAdjustedLr(Muon):
    # Modelled on implementations that fold the lr adjustment in before the decoupled decay.
    def decay(self, p, group):
        p.mul_(1 - self.adjusted_lr(group, p.shape) * group["weight_decay"])  # BUG: plain lr


# ----------------------------------------------------------------------------- Adafactor
class Adafactor(_Base):
    """torch.optim.Adafactor's rule (correct), written plainly."""

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0,
                 weight_decay=0.0, *, foreach=None, maximize=False):
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                                      weight_decay=weight_decay, maximize=maximize))

    def update(self, p, grad, state, group):
        if not state:
            state["step"] = torch.tensor(0.0)
            self.init_moments(grad, state)
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        t = state["step"].item()
        eps1 = group["eps"][0] if group["eps"][0] is not None else torch.finfo(p.dtype).eps
        alpha = self.step_size(p, t, group)
        p.mul_(1 - group["lr"] * group["weight_decay"])
        var = self.second_moment(g, state, self.weight(t, group), eps1)
        update = g * var.clamp(min=eps1 * eps1).rsqrt()
        p.add_(update, alpha=-alpha / self.clip(update, group))

    def init_moments(self, grad, state):
        if grad.dim() > 1:
            state["row_var"] = grad.new_zeros(grad.shape[:-1] + (1,))
            state["col_var"] = grad.new_zeros(grad.shape[:-2] + (1, grad.shape[-1]))
        else:
            state["variance"] = torch.zeros_like(grad)

    def weight(self, t, group):
        """1 - beta2_t = t^tau: the weight of the new squared gradient."""
        return t ** group["beta2_decay"]

    def step_size(self, p, t, group):
        rms = (p.norm() / p.numel() ** 0.5).item()
        return max(group["eps"][1], rms) * min(group["lr"], t**-0.5)

    def second_moment(self, g, state, w, eps1):
        if g.dim() > 1:
            row, col = state["row_var"], state["col_var"]
            row.lerp_(self.squared(g, eps1).mean(-1, keepdim=True), w)
            col.lerp_(self.squared(g, eps1).mean(-2, keepdim=True), w)
            return row @ col / row.mean(-2, keepdim=True).clamp(min=eps1)
        state["variance"].lerp_(self.squared(g, eps1), w)
        return state["variance"].clone()

    def squared(self, g, eps1):
        return g * g

    def clip(self, update, group):
        return max(1.0, (update.norm() / update.numel() ** 0.5).item() / group["d"])


class AdafactorBeta2ForTheNewTerm(Adafactor):
    # Modelled on beta2_t = 1 - t^-c used as the weight of the new term instead of the old one.
    def weight(self, t, group):
        return 1 - t ** group["beta2_decay"]  # BUG: the new term's weight is t^tau


class AdafactorConstantBeta2(Adafactor):
    # Modelled on ports that replace the increasing-decay schedule by Adam's constant beta2.
    def weight(self, t, group):
        return 1 - 0.999  # BUG: beta2_t = 1 - t^tau


class AdafactorUnfactored(Adafactor):
    # Modelled on Adafactor without factoring (the full second moment of Adam, beta1 = 0).
    def init_moments(self, grad, state):
        state["variance"] = torch.zeros_like(grad)  # BUG: a matrix keeps row and column means

    def second_moment(self, g, state, w, eps1):
        state["variance"].lerp_(g * g, w)
        return state["variance"].clone()


class AdafactorEpsInsideTheMoments(Adafactor):
    # Modelled on Shazeer & Stern's Algorithm 4 (eps1 added to g^2) mixed into torch's form.
    def squared(self, g, eps1):
        return g * g + eps1  # BUG: torch applies eps1 to mean(R) and eps1^2 to V at the end


class AdafactorAbsoluteStepSize(Adafactor):
    # Modelled on "relative_step" left out: rho_t alone, not max(eps2, RMS(p)) rho_t.
    def step_size(self, p, t, group):
        return min(group["lr"], t**-0.5)  # BUG: relative to RMS(p)


class AdafactorWithoutUpdateClipping(Adafactor):
    # Modelled on the clipping threshold d accepted but never applied.
    def clip(self, update, group):
        return 1.0  # BUG: max(1, RMS(U) / d)


CORRECT.update(muon=Muon, adafactor=Adafactor)


# ----------------------------------------------------------------------------- optimizer state
class AdamWKeepsLaterGroupsStateAside(AdamW):
    # Modelled on per-group state caches (e.g. a group's state built lazily in a side dict): the
    # parameters move correctly, but only the first group's state is in self.state.
    def update(self, p, grad, state, group):
        if group is not self.param_groups[0]:
            if not hasattr(self, "_aside"):
                self._aside: dict[int, dict] = {}
            state = self._aside.setdefault(id(p), {})  # BUG: not in self.state / state_dict
        super().update(p, grad, state, group)


class AdamWStepCountedPerGroup(AdamW):
    # Modelled on optimizers that count steps per param group (group["step"]) rather than per
    # parameter: a parameter that missed a step (grad None) gets the group's bias correction.
    def update(self, p, grad, state, group):
        super().update(p, grad, state, group)
        state["step"] = torch.tensor(float(self._group_step[id(group)]))  # BUG: per parameter

    @torch.no_grad()
    def step(self, closure=None):
        if not hasattr(self, "_group_step"):
            self._group_step: dict[int, int] = {}
        for group in self.param_groups:
            self._group_step[id(group)] = self._group_step.get(id(group), 0) + 1
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    if state:
                        state["step"] = torch.tensor(float(self._group_step[id(group)] - 1))
                    self.update(p, p.grad, state, group)


class AdamWStateUnderOtherNames(AdamW):
    """Correct, but keeps its moments and step under other names than torch.optim's."""

    names = {"t": "step", "m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq"}

    def update(self, p, grad, state, group):
        theirs = {self.names[k]: state.pop(k) for k in list(state)}
        super().update(p, grad, theirs, group)
        state.update({ours: theirs[key] for ours, key in self.names.items() if key in theirs})
