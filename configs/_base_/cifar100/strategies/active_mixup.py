# Active mixup (Wang, Li, Wang & Gong, CVPR 2020; densekd.strategies.active_mixup documents the algorithm): a
# small unlabeled set, a teacher queried only for probabilities, and rounds of mixup images chosen where the
# student is least confident. The release (github.com/dwang181/active-mixup, CIFAR-10): 1000 unlabeled images,
# mixing weights 0.30:0.04:0.70, 10000 queries per round, a fresh student each round trained 200 epochs on the
# queried set (SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, /10 at 80, 140, 180 epochs).
# Here: 4 rounds, a budget of 1000 + 4 x 10000 queries, and the run's iterations split so that every round
# gets about 200 epochs of its queried set: sum over rounds of 200 x |queried set| / 128 ~= 164,600.
data = dict(train=dict(_delete_=True, type='SubsetDataset', num_samples=1000, seed=0,
                       dataset=dict(type='CIFAR100', root='data/cifar100', split='train', augment=False)),
            batch_size=128)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(_delete_=True, type='constant')   # every round restarts its own schedule (round_lr)
train = dict(epochs=None, iters=164600, eval_interval=4000, checkpoint_interval=1000)
strategy = dict(type='active_mixup', rounds=4, per_round=10000, budget=41000,
                lambdas=[0.30, 0.34, 0.38, 0.42, 0.46, 0.50, 0.54, 0.58, 0.62, 0.66, 0.70], pool_size=None,
                T=1.0, retrain=True, split='proportional', augment=True,
                round_lr=dict(type='multistep', milestones=[0.4, 0.7, 0.9], gamma=0.1))
