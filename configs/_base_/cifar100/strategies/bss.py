# Boundary-supporting samples (Heo, Lee, Yun & Choi, AAAI 2019; densekd.strategies.bss documents the algorithm).
# The authors' release (github.com/bhheo/BSS_distillation, CIFAR-10): T 3, 10 attack steps of eta 0.3 with
# eps 1e-4, the step normalised by ||grad|| (grad_norm_power=1), inputs clipped to [-2.5, 2.5], base samples
# correct for teacher and student, KD weight 4 -> 1 over the run, BSS weight 2 -> 0 at 3/4 of it, CE weight 1.
# It makes 64 BSS from a batch of 256; with the benchmark's batch of 64 the same quarter is attack_size=16.
strategy = dict(type='bss', T=3.0, attack_size=16, steps=10, eta=0.3, eps=1e-4, grad_norm_power=1,
                clamp=[-2.5, 2.5], base_samples='both_correct',
                kd_weight=dict(start=4.0, end=1.0, until=1.0), bss_weight=dict(start=2.0, end=0.0, until=0.75))
task_weight = 1.0
