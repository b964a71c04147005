# Stage 4: the same segmentation network fully fine-tuned (encoder included), starting from the probe's best
# checkpoint (load_from; the pipeline sets it).
_base_ = ['./seg_probe.py']
freeze = None
optimizer = dict(lr=0.005)
