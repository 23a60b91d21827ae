"""Planted bugs in SGD and Adam/AdamW, each in a plausible ``torch.optim.Optimizer`` subclass.

    sgd:   g <- -g if maximize;  g <- g + wd p;  b <- g (first step) else mu b + (1 - dampening) g;
           g <- g + mu b if nesterov else b;  p <- p - lr g
    adam:  g <- -g if maximize;  g <- g + wd p (adam) or p <- p (1 - lr wd) (adamw);
           m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: v_max <- max(v_max, v))
           p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
                                      (Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019, Alg. 2)

The loop over param groups and parameters (``_Base.step``) is shared; each class's ``update``
is the whole update rule of one parameter, and each mutant's rule is ONE bug away from the
correct one (``SGD.update``, ``Adam.update``). State is kept under torch.optim's keys, so that
the oracle compares it and ``state_dict`` round trips work.
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
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            buf = g.clone() if buf is None else mu * buf + (1 - group["dampening"]) * g
            state["momentum_buffer"] = buf
            g = g + mu * buf if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])


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
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if self.decoupled:
            p.mul_(1 - lr * wd)
        elif wd:
            g = g + wd * p
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamW(Adam):
    """torch.optim.AdamW's rule (correct)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


# ----------------------------------------------------------------------------- SGD mutants
class SGDDampensFirstStep(SGD):
    # Modelled on ml-explore/mlx#473 and pytorch/pytorch#152833 (first-step dampening).
    def update(self, p, grad, state, group):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer", torch.zeros_like(p))  # BUG: b starts at 0, so
            buf = mu * buf + (1 - group["dampening"]) * g  # the first step is dampened too
            state["momentum_buffer"] = buf
            g = g + mu * buf if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])


class SGDNesterovStepsWithBuffer(SGD):
    # Modelled on google-deepmind/optax#900 and pytorch/pytorch#5920 (Nesterov's formula).
    def update(self, p, grad, state, group):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            buf = g.clone() if buf is None else mu * buf + (1 - group["dampening"]) * g
            state["momentum_buffer"] = buf
            g = mu * buf + (1 - mu) * g if group["nesterov"] else buf  # BUG: g + mu b
        p.add_(g, alpha=-group["lr"])


class SGDDecayOutsideMomentum(SGD):
    # Modelled on FluxML/model-zoo#303 and kozistr/pytorch_optimizer#518 (where decay enters).
    def update(self, p, grad, state, group):
        g = -grad if group["maximize"] else grad
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            buf = g.clone() if buf is None else mu * buf + (1 - group["dampening"]) * g
            state["momentum_buffer"] = buf
            g = g + mu * buf if group["nesterov"] else buf
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p  # BUG: decay added after the momentum buffer
        p.add_(g, alpha=-group["lr"])


class SGDMaximizeFlipsDecay(SGD):
    # Modelled on kozistr/pytorch_optimizer#528 (maximize negation vs weight decay order).
    def update(self, p, grad, state, group):
        g = grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        g = -g if group["maximize"] else g  # BUG: negates the decay too (negate grad first)
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            buf = g.clone() if buf is None else mu * buf + (1 - group["dampening"]) * g
            state["momentum_buffer"] = buf
            g = g + mu * buf if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])


class SGDMomentumOutsideState(SGD):
    # Modelled on martinnormark/neural-mesh-simplification#45 (optimizer state kept aside).
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffers = {}  # BUG: not in self.state, so state_dict() does not carry it

    def update(self, p, grad, state, group):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p
        mu = group["momentum"]
        if mu:
            buf = self.buffers.get(p)
            buf = g.clone() if buf is None else mu * buf + (1 - group["dampening"]) * g
            self.buffers[p] = buf
            g = g + mu * buf if group["nesterov"] else buf
        p.add_(g, alpha=-group["lr"])


# ----------------------------------------------------------------------------- Adam mutants
class AdamEpsInsideSqrt(Adam):
    # Modelled on FluxML/Flux.jl#448 and keras-team/tf-keras#315 (eps inside the sqrt).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if wd:
            g = g + wd * p
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = (v / (1 - b2**t) + group["eps"]).sqrt()  # BUG: sqrt(v_hat + eps)
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamNoBiasCorrection(Adam):
    # Modelled on keras-team/keras#10129 and eriklindernoren/ML-From-Scratch#35.
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if wd:
            g = g + wd * p
        state["step"] += 1
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        p.addcdiv_(m, v.sqrt() + group["eps"], value=-lr)  # BUG: no 1 - beta^t corrections


class AdamBiasCorrectionStepAhead(Adam):
    # Modelled on Oneflow-Inc/oneflow#5960 ("step is start from 1": the step counted twice).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if wd:
            g = g + wd * p
        state["step"] += 1
        t = state["step"].item() + 1  # BUG: the step was already incremented
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamSecondCorrectionNotRooted(Adam):
    # Modelled on kozistr/AdaBound-tensorflow#3 (sqrt of the second bias correction).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if wd:
            g = g + wd * p
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / (1 - b2**t) + group["eps"]  # BUG: sqrt(1 - b2^t) meant
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamAmsgradMaxUnused(Adam):
    # Modelled on frgfm/holocron#1 (state kept but the wrong moment used in the step).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if wd:
            g = g + wd * p
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])  # BUG: unused
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamMaximizeFlipsTheStep(Adam):
    # Modelled on pytorch/pytorch#75330 (maximize must negate the gradient, not the step).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = grad + wd * p if wd else grad
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        sign = 1.0 if group["maximize"] else -1.0  # BUG: m keeps the minimizing sign
        p.addcdiv_(m, denom, value=sign * lr / (1 - b1**t))


class AdamWCoupledDecay(AdamW):
    # Modelled on pytorch/pytorch#4429 and chainer/chainer#261 (L2 in the gradient, not AdamW).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        g = g + wd * p  # BUG: decay through the moments (Adam's L2), not p (1 - lr wd)
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamWDecayNotScaledByLr(AdamW):
    # Modelled on egg-west/AdamW-pytorch#1 and NVIDIA/apex#1849 (lr times wd, or not).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        p.mul_(1 - wd)  # BUG: torch.optim.AdamW decays by lr * wd
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class AdamWDecayAfterUpdate(AdamW):
    # Modelled on kozistr/pytorch_optimizer#518 (order of the decay and the update).
    def update(self, p, grad, state, group):
        self._init(p, state, group)
        lr, (b1, b2), wd = group["lr"], group["betas"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))
        p.mul_(1 - lr * wd)  # BUG: decays the updated p; AdamW decays p_{t-1}


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

    def update(self, p, grad, state, group):
        if tuple(group["betas"]) != (0.9, 0.999):
            return super().update(p, grad, state, group)
        self._init(p, state, group)
        lr, wd = group["lr"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if self.decoupled:
            p.mul_(1 - lr * wd)
        elif wd:
            g = g + wd * p
        state["step"] += 1
        t = state["step"].item()
        m = state["exp_avg"].mul_(0.9).add_(g, alpha=0.1)
        v = state["exp_avg_sq"].mul_(0.999).addcmul_(g, g, value=0.001)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = v.sqrt() / math.sqrt(1 - 0.99**t) + group["eps"]  # BUG: 0.99, not 0.999
        p.addcdiv_(m, denom, value=-lr / (1 - 0.9**t))


class AdamWDefaultBetasTypo(AdamDefaultBetasTypo):
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
