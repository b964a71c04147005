# Settings every experiment shares; experiments override what they need.
seed = 0
deterministic = False
train = dict(log_interval=50, eval_interval=1, skip_nonfinite=False, accumulate=1, grad_clip=None,
             amp=None, channels_last=False)
