# GST-trained VGG-19 + graph-modulated transformer counter on ShanghaiTech part B (the GST paper's
# best model; method.md 6): Adam lr 5e-6 (the official transformer script), weight decay
# 1e-5, batch 1, 1200 epochs, best checkpoint by 2*MSE+MAE. Gaussians are fitted before
# training by GSTPrecomputeHook (see the dataset base).
# ImageNet init: see configs/counting/_base_/models/vgg19trans_counter.py.
_base_ = [
    './_base_/default_runtime.py',
    './_base_/schedules/adam_1200e.py',
    './_base_/models/vgg19trans_counter.py',
    './_base_/datasets/shhb.py',
]
# the official script trains the transformer counter at half the VGG learning rate
optim_wrapper = dict(optimizer=dict(lr=5e-6))
