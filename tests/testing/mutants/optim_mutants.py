"""Planted bugs in SGD and Adam/AdamW, each in a plausible ``torch.optim.Optimizer`` subclass.

    sgd:   g <- -g if maximize;  g <- g + wd p;  b <- g (first step) else mu b + (1 - dampening) g;
           g <- g + mu b if nesterov else b;  p <- p - lr g
    adam:  g <- -g if maximize;  g <- g + wd p (adam) or p <- p (1 - lr wd) (adamw);
           m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: v_max <- max(v_max, v))
           p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
                                      (Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019, Alg. 2)

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
