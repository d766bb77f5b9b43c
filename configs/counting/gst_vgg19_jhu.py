# GST-trained VGG-19 counter on JHU-Crowd++ with the paper's settings (method.md 6):
# Adam lr 1e-5, weight decay 1e-5, batch 1, 1200 epochs, best checkpoint by 2*MSE+MAE.
# Gaussians are fitted before training by GSTPrecomputeHook (see the dataset base).
# ImageNet init: see configs/counting/_base_/models/vgg19_counter.py.
_base_ = [
    './_base_/default_runtime.py',
    './_base_/schedules/adam_1200e.py',
    './_base_/models/vgg19_counter.py',
    './_base_/datasets/jhu.py',
]
