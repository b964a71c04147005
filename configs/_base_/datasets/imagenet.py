# ImageNet (ILSVRC-2012, 1000 classes): RandomResizedCrop 224 + flip for training, resize 256 + centre crop 224
# for validation, ImageNet's normalisation, decoded with Pillow in the loader workers.
# Expected under data/imagenet/ (or --data-root PATH): train/<wnid>/*.JPEG (1,281,167 images) and val/<wnid>/*.JPEG
# or the flat val/ILSVRC2012_val_*.JPEG (50,000) with LOC_val_solution.csv or the devkit (README, Data).
# --synthetic swaps in SyntheticImageNet. Loader: data.num_workers per process (capped by the cores each process
# may use), workers kept between epochs, 4 batches prefetched per worker, pinned memory on CUDA (the default).
# For GPU decoding set data.train.decode='device' and data.val.decode='device' (JPEG bytes from the workers,
# nvJPEG on the GPU); 'torchvision' decodes with libjpeg-turbo in the workers.
task = dict(type='classification')
data = dict(
    train=dict(type='ImageNet', root='data/imagenet', split='train', size=224, decode='pil'),
    val=dict(type='ImageNet', root='data/imagenet', split='val', size=224, decode='pil'),
    batch_size=256,         # global batch; split across processes under torchrun
    val_batch_size=256,
    num_workers=16,
    persistent_workers=True,
    prefetch_factor=4,
)
