# Paper / reference schedule (method.md 6): Adam lr 1e-5, weight decay 1e-5,
# batch 1, 1200 epochs, validation every 5 epochs, constant learning rate.
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-5, weight_decay=1e-5))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1200, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
