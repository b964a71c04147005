"""Critic steps of adversarial distillation terms (:class:`~densekd.losses.base.Adversarial`, e.g. HolisticKD).

After every student step, each adversarial term's critic takes ``n_critic`` steps of its own optimiser
(``loss.build_d_optimizer()``, following the run's learning-rate schedule from its own base rate) on the
student's detached outputs of that step. Gradients of the critic, which lives outside DDP's reducer, are
averaged across processes by hand. A non-finite critic loss stops the run naming the term and the
iteration, or skips the rest of that term's critic steps with ``train.skip_nonfinite=True``; so do
non-finite critic gradients (checked before each critic step). Skipped critic steps are counted per critic
(``critic/<term>/<i>`` in ``summary.json``'s ``skipped_steps_by``).
"""
from __future__ import annotations

import torch

from densekd.engine.step import NonFiniteLossError


class CriticSteps:
    """The critic optimisers of a distiller's adversarial terms and their steps."""

    def __init__(self, distiller):
        self.distiller = distiller
        self.optimizers = {name: [m.build_d_optimizer() for m in mods]
                           for name, mods in distiller.adversarial_modules().items()}

    def named_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {f"critic/{name}/{i}": opt for name, opts in self.optimizers.items() for i, opt in enumerate(opts)}

    def state_dict(self) -> dict:
        return {name: [o.state_dict() for o in opts] for name, opts in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, states in state.items():
            for opt, st in zip(self.optimizers.get(name, []), states):
                opt.load_state_dict(st)

    def step(self, step) -> None:
        for name, modules in self.distiller.adversarial_modules().items():
            cached = self.distiller.adversarial_inputs(name)
            if cached is None:
                continue
            s, ts, image = cached
            s = s.detach() if isinstance(s, torch.Tensor) else [x.detach() for x in s]
            for i, (module, t, opt) in enumerate(zip(modules, ts, self.optimizers[name])):
                stream = f"critic/{name}/{i}"
                for _ in range(int(module.n_critic)):
                    opt.zero_grad(set_to_none=True)
                    try:
                        if step.guard.deferred:  # checked on the device, read back once per log interval
                            d_loss = module.discriminator_loss(s, t, image, check_finite=False)
                            step.guard.defer(~torch.isfinite(d_loss), 0, step.iter)
                        else:
                            d_loss = module.discriminator_loss(s, t, image)
                            if not torch.isfinite(d_loss):
                                raise FloatingPointError(f"discriminator loss {d_loss.item()}")
                    except FloatingPointError as exc:
                        msg = f"Non-finite discriminator loss of term {name} at iteration {step.iter + 1}: {exc}."
                        if step.skip_nonfinite:
                            step.warn(msg + " Skipping this critic step (train.skip_nonfinite=True).")
                            step.guard.skipped_step(stream, msg.rstrip("."))
                            break
                        raise NonFiniteLossError(msg) from exc
                    d_loss.backward()
                    params = list(module.separate_parameters())
                    step.average_grads(params)
                    if not step.finite_grads(params, f"the critic of {name}", stream=stream):
                        opt.zero_grad(set_to_none=True)
                        break
                    opt.step()
